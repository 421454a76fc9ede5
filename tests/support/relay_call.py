"""A relayed call between two headless Chromium pages, signaled through jsongle.

:class:`PageServer` serves the test page (``tests/js/relay-call.html``) and
the stock socket.io-client browser bundle from ``tests/js/node_modules`` on
127.0.0.1; :func:`relay_call` runs ``tests/js/relay-call.js`` (puppeteer-core
driving Debian's chromium) and returns what the pages' ``getStats()`` said.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CHROMIUM = "/usr/bin/chromium"

FILES = {
    "/relay-call.html": (JS_DIR / "relay-call.html", "text/html; charset=utf-8"),
    "/socket.io.min.js": (JS_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js", "text/javascript"),
}


def missing_tools() -> str | None:
    """Why the browser test cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian package: chromium)"
    if not (JS_DIR / "node_modules" / "puppeteer-core").is_dir():
        return "puppeteer-core is not installed: run `npm ci` in tests/js"
    return None


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        entry = FILES.get(self.path.split("?", 1)[0])
        if entry is None:
            self.send_error(404)
            return
        body = entry[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", entry[1])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PageServer:
    """The test page and the socket.io bundle over HTTP on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/relay-call.html"

    def __enter__(self) -> "PageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def peer(url: str, uid: str, rid: str, auth: dict[str, Any] | None = None, ice_servers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One participant: the jsongle server's URL, its CONNECT auth, uid and room.

    Without ``ice_servers`` the page uses the ``iceServers`` of the hello.
    """
    return {"url": url, "uid": uid, "rid": rid, "auth": auth or {}, "iceServers": ice_servers}


def relay_call(peers: list[dict[str, Any]], timeout: float = 20.0) -> dict[str, Any]:
    """Run a call with ``iceTransportPolicy: "relay"``; the first peer calls.

    Returns the driver's result (``outcome``, per-peer ``started`` and
    ``stats``, the pages' console). The driver closes its browser itself;
    if it outlives ``timeout`` by far it gets SIGTERM (it closes the
    browser on it), then SIGKILL.
    """
    config = {"peers": peers, "timeoutMs": int(timeout * 1000), "executablePath": CHROMIUM}
    with PageServer() as pages:
        config["pageUrl"] = pages.page_url
        proc = subprocess.Popen(
            ["node", "relay-call.js", json.dumps(config)],
            cwd=str(JS_DIR), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                stdout, stderr = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"relay-call.js printed no result (exit {proc.returncode}):\n{stdout}\n{stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = stderr
    return result
