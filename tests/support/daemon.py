"""Start and stop the real jsongle daemon (``twistd -n jsongle``).

The daemon gets a dotenv config file written into a per-test directory and
listens on ephemeral ports; the ports are read back from its log lines
``<service> listening on <address>:<port>``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

LISTENING = re.compile(r"(\w+) listening on [\d.]+:(\d+)")

TWISTD_MAIN = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; sys.exit(run())"

ConfigValue = str | int | bool | Path | None

DEFAULT_CONFIG: dict[str, ConfigValue] = {
    "wsPort": 0,
    "restPort": 0,
    "listenAddress": "127.0.0.1",
    "appToken": "test-token",
    "logDefaultLevel": "info",
}


class DaemonError(RuntimeError):
    """The daemon did not start (or stop) as expected; carries its output."""


def _format_value(value: ConfigValue) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"config values must be one line: {text!r}")
    return text


def merged_config(directory: Path, config: dict[str, ConfigValue] | None = None) -> dict[str, ConfigValue]:
    merged: dict[str, ConfigValue] = dict(DEFAULT_CONFIG)
    merged["logPath"] = directory / "jsongle.log"
    merged.update(config or {})
    return merged


def write_env_file(directory: Path, config: dict[str, ConfigValue] | None = None) -> Path:
    """Write ``directory/jsongle.env``: test defaults, then *config* on top.

    A value of ``None`` removes the key (to test a missing setting). Values are
    written unquoted, exactly as given (``True``/``False`` as ``true``/``false``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    merged = merged_config(directory, config)
    path = directory / "jsongle.env"
    lines = [f"{key}={_format_value(value)}" for key, value in merged.items() if value is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Daemon:
    def __init__(self, proc: subprocess.Popen[str], env_path: Path, log_path: Path | None) -> None:
        self._proc = proc
        self.env_path = env_path
        self.log_path = log_path
        self._lines: list[str] = []
        self._ports: dict[str, int] = {}
        self._cond = threading.Condition()
        self._eof = False
        #: Where this run's lines start in a log file an earlier run may have written.
        self._log_offset = log_path.stat().st_size if log_path is not None and log_path.is_file() else 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def command(cls, env_path: Path) -> list[str]:
        # twistd, not ``python -m twisted`` (that is ``twist``, which rejects
        # -n/--pidfile/--logfile). Run through this interpreter so the test
        # venv is used; with -c, the cwd (the repo root) is on sys.path first.
        return [
            sys.executable,
            "-c",
            TWISTD_MAIN,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "jsongle",
            "--config",
            str(env_path),
        ]

    @classmethod
    def start(
        cls,
        tmp_path: Path,
        config: dict[str, ConfigValue] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
        timeout: float = 20.0,
    ) -> "Daemon":
        env_path = write_env_file(tmp_path, config)
        log_value = merged_config(tmp_path, config).get("logPath")
        proc_env = dict(os.environ)
        pythonpath = proc_env.get("PYTHONPATH")
        proc_env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
        proc_env["PYTHONUNBUFFERED"] = "1"
        proc_env.update(env or {})
        proc = subprocess.Popen(
            cls.command(env_path),
            cwd=str(REPO_ROOT),
            env=proc_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        daemon = cls(proc, env_path, Path(str(log_value)) if log_value is not None else None)
        if wait:
            try:
                daemon.wait_for_port("websocket", timeout=timeout)
            except DaemonError:
                daemon.stop()
                raise
        return daemon

    # ---------------------------------------------------------------- output

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            with self._cond:
                self._lines.append(line)
                match = LISTENING.search(line)
                if match:
                    self._ports.setdefault(match.group(1), int(match.group(2)))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def output(self) -> str:
        """All output lines (stdout and stderr) so far."""
        with self._cond:
            return "\n".join(self._lines)

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def _fail(self, message: str) -> DaemonError:
        return DaemonError(f"{message}\n--- daemon output ---\n{self.output()}")

    def wait_for_line(self, pattern: str, timeout: float = 10.0, *, start: int = 0) -> re.Match[str]:
        """First output line (from index *start* on, past or future) that
        matches the regex *pattern* (``re.search``)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self._lines):
                    match = regex.search(self._lines[index])
                    if match:
                        return match
                    index += 1
                if self._eof:
                    raise self._fail(
                        f"daemon exited ({self._proc.poll()}) before a line matched {pattern!r}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._fail(f"no line matched {pattern!r} within {timeout}s")
                self._cond.wait(remaining)

    def wait_for_port(self, service: str, timeout: float = 10.0) -> int:
        """Port from the ``<service> listening on ...`` line, waiting for it.

        The line is info: below ``logDefaultLevel=warn`` it reaches only the
        log file, where it is looked for too.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while service not in self._ports:
                self._ports_from_log_file()
                if service in self._ports:
                    break
                if self._eof:
                    raise self._fail(f"daemon exited ({self._proc.poll()}) before {service} was listening")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._fail(f"{service} not listening within {timeout}s")
                self._cond.wait(min(remaining, 0.05))
            return self._ports[service]

    def _ports_from_log_file(self) -> None:
        if self.log_path is None or not self.log_path.is_file():
            return
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return
        for match in LISTENING.finditer(text):
            self._ports.setdefault(match.group(1), int(match.group(2)))

    @property
    def ports(self) -> dict[str, int]:
        with self._cond:
            return dict(self._ports)

    @property
    def ws_port(self) -> int:
        port = self.ports.get("websocket")
        if port is None:
            raise self._fail("the daemon has not reported its websocket port")
        return port

    @property
    def rest_port(self) -> int | None:
        return self.ports.get("rest")

    @property
    def ws_url(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    @property
    def rest_url(self) -> str | None:
        port = self.rest_port
        return None if port is None else f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    # --------------------------------------------------------------- process

    def _finish_output(self) -> None:
        # After exit the reader reaches EOF; wait so output() is complete.
        self._reader.join(timeout=5)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the daemon to exit on its own; return its exit code."""
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"daemon still running after {timeout}s") from None
        self._finish_output()
        return code

    def signal(self, signum: int) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after *timeout*; returns the exit code.

        Idempotent: calling it on an exited daemon just returns its code."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._finish_output()
        if self._proc.stdout is not None and not self._reader.is_alive():
            self._proc.stdout.close()
        return self._proc.returncode


def run_expecting_failure(
    tmp_path: Path,
    config: dict[str, ConfigValue] | None,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Start the daemon without waiting for it to listen, wait for it to exit
    and return ``(returncode, output)``. Raises DaemonError (after stopping
    it) if it is still running after *timeout*."""
    daemon = Daemon.start(tmp_path, config, env=env, wait=False)
    try:
        code = daemon.wait_exit(timeout=timeout)
    except DaemonError:
        daemon.stop()
        raise
    return code, daemon.output()
