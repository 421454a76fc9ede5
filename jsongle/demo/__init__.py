"""The demo page (PROTOCOL.md §14), served at ``/demo/`` on wsPort when ``demo=true``.

Its files ship inside this package and are read with :mod:`importlib.resources`,
so a pip-installed server serves them offline; the page loads nothing from
another host, and its Content-Security-Policy makes the browser hold it to that.
"""

from __future__ import annotations

from importlib import resources
from typing import Mapping

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request
from twisted.web.util import Redirect

from jsongle.config import Config

__all__ = ["FILES", "DemoPage", "demo_children"]

#: Every file of the page and its content type.
FILES: Mapping[str, bytes] = {
    "index.html": b"text/html; charset=utf-8",
    "demo.js": b"text/javascript; charset=utf-8",
    "demo.css": b"text/css; charset=utf-8",
    "socket.io.min.js": b"text/javascript; charset=utf-8",
    "socket.io.LICENSE": b"text/plain; charset=utf-8",
}

#: Same origin only: scripts, styles, the Socket.IO connection (polling and WebSocket).
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; media-src 'self' blob: mediastream:; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'"
)


class _File(Resource):
    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-cache")
        return self.body

    render_HEAD = render_GET


class DemoPage(Resource):
    """``/demo/`` and its files; ``/demo`` redirects to ``/demo/`` keeping the query."""

    def __init__(self) -> None:
        super().__init__()
        package = resources.files(__name__)
        self.files = {
            name.encode(): _File(package.joinpath(name).read_bytes(), content_type)
            for name, content_type in FILES.items()
        }
        self.files[b""] = self.files[b"index.html"]

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self.files.get(path) or NoResource()

    def render_GET(self, request: Request) -> bytes:
        # Relative links in the page need the trailing slash.
        query = request.uri.partition(b"?")[2]
        request.redirect(request.path + b"/" + (b"?" + query if query else b""))
        return b""


def demo_children(config: Config) -> dict[bytes, Resource]:
    """The wsPort site's extra children when demo=true: the page, and ``/``
    sending a newcomer who opens the bare address to it."""
    if not config.demo:
        return {}
    return {b"demo": DemoPage(), b"": Redirect(b"/demo/")}
