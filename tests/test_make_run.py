"""`make run` as a newcomer meets it: a fresh clone, the recipe's exact command.

The command comes from ``make -n run`` in a fresh clone of this repository,
with the test's virtualenv as ``VENV`` (marked as built, so make installs
nothing), and runs under ``/bin/sh -c`` as make runs it. The environment
moves the ports and the log file (it wins over etc/jsongle.env).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import socketio

from tests.support.daemon import REPO_ROOT

TEST_VENV = Path(sys.prefix)
STAMP = TEST_VENV / ".installed-server"

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of the committed branch."""
    target = tmp_path_factory.mktemp("newcomer") / "jsongle"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True, timeout=60)
    return target


def make_dry_run(clone: Path, *args: str) -> list[str]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=str(clone), capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.splitlines()


def run_command(clone: Path) -> str:
    lines = make_dry_run(clone, "-o", str(STAMP), "run", f"VENV={TEST_VENV}")
    assert len(lines) == 1, lines  # nothing to build: only the server's command
    return lines[0]


class Output:
    """Collects a process's output lines; waits for one that matches."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no line matched {pattern!r}; output:\n" + "\n".join(self.lines))
                self.cond.wait(min(remaining, 0.5))


def start(argv: list[str], clone: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Output]:
    env = dict(os.environ, wsPort="0", restPort="0", listenAddress="127.0.0.1", logPath=str(tmp_path / "jsongle.log"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        argv, cwd=str(clone), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    return proc, Output(proc)


def port_is_free(port: int) -> bool:
    """Whether a new server can listen on the port, as a restarted jsongle
    would (SO_REUSEADDR, like Twisted: connections left in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


def use_the_server(output: Output, tmp_path: Path) -> tuple[int, int]:
    """Follow the start-up note: open the demo page, connect a Socket.IO client."""
    demo = output.wait_for(r"demo page: open (http://127\.0\.0\.1:(\d+)/demo/\?room=demo&auto=1) in two browser tabs")
    rest = int(output.wait_for(r"REST and metrics: http://127\.0\.0\.1:(\d+)/health").group(1))
    output.wait_for(rf"log file: {re.escape(str(tmp_path / 'jsongle.log'))}: every level, debug included")
    with urllib.request.urlopen(demo.group(1), timeout=10) as page:
        assert b"demo.js" in page.read()
    hello = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("jsongle", lambda message: hello.set())
    client.connect(f"http://127.0.0.1:{demo.group(2)}", transports=["websocket"], wait_timeout=10)
    try:
        assert hello.wait(10), "no session-hello"
    finally:
        client.disconnect()
    return int(demo.group(2)), rest


def stop_and_check(proc: subprocess.Popen[str], pid: int, ports: tuple[int, int], output: Output) -> int:
    os.kill(pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    for port in ports:
        assert port_is_free(port), f"port {port} still held after SIGTERM; output:\n" + "\n".join(output.lines)
    return code


def test_first_run_installs_only_the_servers_packages(clone, tmp_path):
    fresh = make_dry_run(clone, "run", f"VENV={tmp_path / 'venv'}")
    installs = [line for line in fresh if " pip install " in line and "--upgrade pip" not in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install --quiet -c constraints.txt -r requirements.txt"]
    tests = make_dry_run(clone, "test", f"VENV={tmp_path / 'venv'}")
    assert any("-r requirements-test.txt" in line for line in tests)
    server = (clone / "requirements.txt").read_text()
    for tool in ("pytest", "hypothesis", "socketio", "treq", "setuptools"):
        assert tool not in server


def test_sigterm_to_the_pid_make_started_stops_the_server(clone, tmp_path):
    command = run_command(clone)
    assert command.startswith("exec "), command
    proc, output = start(["/bin/sh", "-c", command], clone, tmp_path)
    try:
        ports = use_the_server(output, tmp_path)
        # exec: the PID make started is the server itself.
        assert b"twistd" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert stop_and_check(proc, proc.pid, ports, output) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_to_make_stops_the_server(clone, tmp_path):
    # GNU make passes SIGTERM on to the command it runs, which exec made the server.
    proc, output = start(["make", "--no-print-directory", "-o", str(STAMP), "run", f"VENV={TEST_VENV}"], clone, tmp_path)
    try:
        ports = use_the_server(output, tmp_path)
        stop_and_check(proc, proc.pid, ports, output)  # make itself ends by the signal
        # The server shut down in order (the console is at warn: the log file says so).
        records = [json.loads(line) for line in (tmp_path / "jsongle.log").read_text(encoding="utf-8").splitlines()]
        assert "stopped" in [record.get("text") for record in records], records[-5:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
