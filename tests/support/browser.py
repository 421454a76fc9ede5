"""Headless Chromium for tests: the Python side of ``tests/js/browser.js``.

One :class:`Browser` per test module (the ``browser`` fixture of
``tests/conftest.py``), a :class:`Page` per participant. State is read from the
page (:meth:`Page.evaluate`, :meth:`Page.wait_for`), never from screenshots.
Every page records the URLs it requested (WebSockets included) and its errors
(page errors, console errors, failed requests), so a test can check both::

    def test_something(browser, daemon_factory):
        daemon = daemon_factory({"demo": True})
        page = browser.open("alice", f"{daemon.ws_url}/demo/?room=r1&token=test-token")
        try:
            page.wait_for("document.body.dataset.state === 'joined'")
            assert page.log()["errors"] == []
        finally:
            page.close()

Page names are unique per browser: close every page a test opens.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parents[1] / "js"


class BrowserError(RuntimeError):
    """The driver or the browser failed, or a command failed in the page."""


def chromium_path() -> str | None:
    """Debian's chromium (``$CHROMIUM`` overrides), or None when absent."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def why_unavailable() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if chromium_path() is None:
        return "chromium is not installed (Debian package: chromium); .ci/run installs it"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS_DIR / "node_modules" / "puppeteer-core").is_dir():
        return "puppeteer-core is not installed: run `npm ci` in tests/js"
    return None


class Browser:
    """A headless Chromium with fake camera and microphone, driven line by line."""

    def __init__(self, proc: subprocess.Popen[str], profile: tempfile.TemporaryDirectory[str]) -> None:
        self._proc = proc
        self._profile = profile
        self._seq = itertools.count(1)
        self._answers: dict[int, dict[str, Any]] = {}
        self._other: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.version = ""

    @classmethod
    def start(cls, timeout: float = 30.0) -> "Browser":
        executable = chromium_path()
        if executable is None:
            raise BrowserError("chromium is not installed")
        profile = tempfile.TemporaryDirectory(prefix="jsongle-chromium-")
        proc = subprocess.Popen(
            ["node", "browser.js", executable, profile.name],
            cwd=str(JS_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        browser = cls(proc, profile)
        ready = browser._wait(lambda: next((l for l in browser._other if l.get("type") in ("ready", "error")), None), timeout)
        if ready.get("type") != "ready":
            browser.stop()
            raise BrowserError(f"the browser did not start: {ready.get('error')}\n{browser.stderr()}")
        browser.version = ready["browser"]
        return browser

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"type": "stdout", "text": raw.rstrip("\n")}
            with self._cond:
                if isinstance(line.get("seq"), int):
                    self._answers[line["seq"]] = line
                else:
                    self._other.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw.rstrip("\n"))

    def stderr(self) -> str:
        return "\n".join(self._stderr)

    @property
    def pid(self) -> int:
        """The driver's PID; Chromium's processes run below it."""
        return self._proc.pid

    def _wait(self, found: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found()
                if value is not None:
                    return value
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "the driver exited" if self._eof else f"no answer within {timeout}s"
                    raise BrowserError(f"{why}; driver said: {self._other}\n{self.stderr()}")
                self._cond.wait(remaining)

    def command(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        """Send one command and return its value; BrowserError when it failed."""
        seq = next(self._seq)
        with self._lock:
            if self._proc.poll() is not None or self._proc.stdin is None:
                raise BrowserError(f"the driver has exited ({self._proc.returncode})\n{self.stderr()}")
            self._proc.stdin.write(json.dumps({"seq": seq, "op": op, **fields}) + "\n")
            self._proc.stdin.flush()
        answer = self._wait(lambda: self._answers.pop(seq, None), timeout)
        if not answer["ok"]:
            raise BrowserError(f"{op} failed: {answer['error']}")
        return answer["value"]

    def open(self, name: str, url: str, timeout: float = 30.0) -> "Page":
        self.command("open", timeout=timeout, page=name, url=url)
        return Page(self, name)

    def stop(self, timeout: float = 10.0) -> int:
        """Close the browser and the driver (killed by its PID if it hangs). Idempotent."""
        if self._proc.poll() is None:
            try:
                with self._lock:
                    assert self._proc.stdin is not None
                    self._proc.stdin.write(json.dumps({"seq": 0, "op": "exit"}) + "\n")
                    self._proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._profile.cleanup()
        return self._proc.returncode


class Page:
    """One tab; ``name`` identifies it to the driver."""

    def __init__(self, browser: Browser, name: str) -> None:
        self.browser = browser
        self.name = name
        self.closed_log: dict[str, list[str]] | None = None

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression in the page (Promises are awaited)."""
        return self.browser.command("eval", timeout=timeout, page=self.name, expr=expression)

    def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        """Poll until the expression is truthy; BrowserError (with the page's state) on timeout."""
        try:
            self.browser.command("wait", timeout=timeout + 10, page=self.name, expr=expression, ms=int(timeout * 1000))
        except BrowserError as error:
            raise BrowserError(f"{error}\nwaiting for: {expression}\npage state: {self.describe()}") from None

    def dataset(self) -> dict[str, str]:
        return self.evaluate("Object.assign({}, document.body.dataset)")

    def describe(self) -> str:
        try:
            return json.dumps(self.evaluate(
                "({dataset: Object.assign({}, document.body.dataset),"
                " events: [...document.querySelectorAll('#events li')].map(e => e.textContent).slice(0, 20)})"
            ))
        except BrowserError as error:
            return f"(cannot read the page: {error})"

    def screenshot(self, path: Path) -> Path:
        self.browser.command("screenshot", page=self.name, path=str(path))
        return path

    def log(self) -> dict[str, list[str]]:
        """``{"requests": [urls], "errors": [texts]}`` so far (kept after close)."""
        if self.closed_log is not None:
            return self.closed_log
        return self.browser.command("log", page=self.name)

    def close(self) -> None:
        if self.closed_log is None:
            self.closed_log = self.browser.command("close", page=self.name)
