"""The HTTP face of Engine.IO: ``/socket.io/`` routes polling and WebSocket.

Errors are the standard Engine.IO 400 JSON bodies, so clients see the same
answers as from the reference server.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from jsongle.engineio import packet as eio
from jsongle.engineio.polling import PollingTransport
from jsongle.engineio.server import EngineServer
from jsongle.engineio.websocket import EngineWebSocketFactory, origin_allowed

# Engine.IO's error codes for rejected HTTP requests.
UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
FORBIDDEN = (4, "Forbidden")
UNSUPPORTED_PROTOCOL_VERSION = (5, "Unsupported protocol version")


def _arg(request: Request, name: bytes) -> Optional[str]:
    values = request.args.get(name)
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""


class EngineIOResource(Resource):
    """Serves the Engine.IO endpoint for both transports."""

    isLeaf = True
    log = Logger()

    def __init__(self, engine: EngineServer, ws_factory: EngineWebSocketFactory) -> None:
        super().__init__()
        self.engine = engine
        self._websocket = WebSocketResource(ws_factory)

    def render(self, request: Request) -> object:
        origin_header = request.getHeader(b"origin")
        origin = origin_header.decode("latin-1") if origin_header else None
        allowed = self.engine.options.cors_origins
        if allowed:
            if not origin_allowed(origin, allowed):
                return self._error(request, FORBIDDEN, status=403)
            if origin is not None:
                request.setHeader(b"access-control-allow-origin", origin.encode("latin-1"))
                request.setHeader(b"access-control-allow-credentials", b"true")
                request.setHeader(b"vary", b"Origin")
        if request.method == b"OPTIONS":
            request.setHeader(b"access-control-allow-methods", b"GET, POST")
            request.setHeader(b"access-control-allow-headers", b"content-type")
            request.setResponseCode(204)
            return b""

        if _arg(request, b"EIO") != "4":
            return self._error(request, UNSUPPORTED_PROTOCOL_VERSION)
        transport = _arg(request, b"transport")
        if transport == "websocket":
            upgrade = (request.getHeader(b"upgrade") or b"").lower()
            if upgrade != b"websocket":
                return self._error(request, BAD_REQUEST)
            sid = _arg(request, b"sid")
            if sid is not None and self.engine.find(sid) is None:
                return self._error(request, UNKNOWN_SID)
            channel = request.channel
            connection = channel.transport
            answer = self._websocket.render(request)
            # The WebSocket protocol owns the TCP connection now; the HTTP
            # channel it came through (request and headers included) stays
            # alive as the connection's producer and through its idle timer.
            channel.setTimeout(None)
            if getattr(connection, "producer", None) is channel:
                connection.unregisterProducer()
            return answer
        if transport != "polling":
            return self._error(request, UNKNOWN_TRANSPORT)

        sid = _arg(request, b"sid")
        if sid is None:
            if request.method != b"GET":
                return self._error(request, BAD_HANDSHAKE_METHOD)
            return self._handshake(request)

        session = self.engine.find(sid)
        polling = session.transport if session is not None else None
        if not isinstance(polling, PollingTransport):
            return self._error(request, UNKNOWN_SID if session is None else BAD_REQUEST)
        if request.method == b"GET":
            if session.closed and not polling.has_queued:
                return self._error(request, UNKNOWN_SID)
            answer = polling.handle_get(request)
            if answer is None:
                return self._error(request, BAD_REQUEST)
            return answer
        if request.method == b"POST":
            if session.closed:
                return self._error(request, UNKNOWN_SID)
            return self._post(request, polling)
        return self._error(request, BAD_REQUEST)

    def _handshake(self, request: Request) -> object:
        transport = PollingTransport()
        peer = request.getClientAddress()
        transport.session = self.engine.open(
            transport, getattr(peer, "host", str(peer)), upgrades=["websocket"]
        )
        return transport.handle_get(request)

    def _post(self, request: Request, polling: PollingTransport) -> bytes:
        content = request.content
        content.seek(0, 2)
        size = content.tell()
        if size > self.engine.options.max_payload:
            polling.fail()
            request.setResponseCode(413)
            request.setHeader(b"content-type", b"application/json")
            return b'{"code":3,"message":"Payload too large"}'
        content.seek(0)
        try:
            polling.handle_post(content.read())
        except eio.PacketError:
            polling.fail()
            return self._error(request, BAD_REQUEST)
        request.setHeader(b"content-type", b"text/html")
        return b"ok"

    @staticmethod
    def _error(request: Request, error: tuple[int, str], status: int = 400) -> bytes:
        code, message = error
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"code": code, "message": message}).encode("utf-8")


class QuietSite(Site):
    """A Site without per-request access logging (polling makes it noise)."""

    noisy = False

    def log(self, request: Request) -> None:
        pass


def engineio_site(
    engine: EngineServer,
    paths: Iterable[bytes] = (b"socket.io",),
) -> Site:
    """A Site serving Engine.IO under each of ``paths``; 404 elsewhere."""
    root = Resource()
    endpoint = EngineIOResource(engine, EngineWebSocketFactory(engine))
    for path in paths:
        root.putChild(path, endpoint)
    return QuietSite(root)
