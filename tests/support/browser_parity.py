"""Pages in headless Chromium, and a small web server to serve them from.

``tests/js/browser_pages.js`` opens the pages with puppeteer-core (Debian's
``chromium``, fake camera and microphone) and reports what each page put in
``window.__result``; :func:`run_pages` runs it in its own process group and
kills the whole group if it outlives its deadline, so no browser is left
behind.  :class:`StaticSite` serves in-memory files on 127.0.0.1 from a
thread: a page on an origin of its own, as a web app has.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional, Union

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CHROMIUM = "/usr/bin/chromium"

Body = Union[bytes, Path, Callable[[], bytes]]


class BrowserError(RuntimeError):
    """The browser run did not finish, or a page did not report."""


def chromium_missing() -> Optional[str]:
    """Why browser tests cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (Debian package chromium)"
    if not (JS_DIR / "node_modules" / "puppeteer-core").exists():
        return "tests/js/node_modules has no puppeteer-core (npm ci in tests/js)"
    return None


@dataclass
class PagesRun:
    results: dict[str, Any]
    stderr: str


def run_pages(pages: list[tuple[str, str]], timeout: float = 30.0, ready_when: Optional[dict[str, str]] = None) -> PagesRun:
    """Open ``pages`` ((name, url) pairs) at once; each page's ``window.__result``.

    ``ready_when`` maps a page name to a JavaScript expression that must be
    true in that page before the next page is opened.
    """
    ready_when = ready_when or {}
    spec = {
        "pages": [{"name": n, "url": u, "readyWhen": ready_when.get(n)} for n, u in pages],
        "timeoutMs": int(timeout * 1000),
        "chromium": CHROMIUM,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    proc = subprocess.Popen(
        ["node", "browser_pages.js", handle.name],
        cwd=str(JS_DIR),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise BrowserError(f"the browser run outlived its deadline\n{stderr[-4000:]}") from None
    finally:
        os.unlink(handle.name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise BrowserError(f"no report from the browser (exit {proc.returncode})\n{stderr[-4000:]}")
    report = json.loads(lines[-1])
    if not report.get("ok"):
        raise BrowserError(f"{report.get('error')}\nresults: {report.get('results')}\n{stderr[-6000:]}")
    return PagesRun(report["results"], stderr)


_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


class StaticSite:
    """Files served on 127.0.0.1 at a free port: ``{"/page.html": body}``.

    A body is bytes, a file, or a callable giving bytes at each request.
    """

    def __init__(self, files: dict[str, Body]) -> None:
        self.files = dict(files)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = site.files.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                if isinstance(body, Path):
                    data, suffix = body.read_bytes(), body.suffix
                else:
                    data = body() if callable(body) else body
                    suffix = Path(self.path.split("?", 1)[0]).suffix
                self.send_response(200)
                self.send_header("Content-Type", _TYPES.get(suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "StaticSite":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
