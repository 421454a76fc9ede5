"""The HTTP face of Engine.IO: ``/socket.io/`` routes polling and WebSocket.

Errors are the standard Engine.IO 400 JSON bodies, so clients see the same
answers as from the reference server.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from jsongle.engineio import packet as eio
from jsongle.engineio.firstrequest import FirstRequestFactory, Head, take_over
from jsongle.engineio.polling import PollingTransport
from jsongle.engineio.server import EngineServer
from jsongle.engineio.websocket import EngineWebSocketFactory
from jsongle.engineio.wshandshake import HandshakeRefused, check_handshake, check_opening_handshake, hand_over

# Engine.IO's error codes for rejected HTTP requests.
UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
FORBIDDEN = (4, "Forbidden")
UNSUPPORTED_PROTOCOL_VERSION = (5, "Unsupported protocol version")


#: What socket.io's default CORS (the ``cors`` package) lets a preflight ask for.
CORS_METHODS = b"GET,HEAD,PUT,PATCH,POST,DELETE"


def origin_allowed(origin: Optional[str], allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; other clients may not, and are let through."""
    if not allowed or origin is None or "*" in allowed:
        return True
    return origin in allowed


def _arg(request: Request, name: bytes) -> Optional[str]:
    values = request.args.get(name)
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _plain_args(query: bytes) -> Optional[dict[bytes, bytes]]:
    """Each query argument's first value, or None if any is escaped (Twisted Web decodes those)."""
    if b"%" in query or b"+" in query:
        return None
    args: dict[bytes, bytes] = {}
    for item in query.split(b"&"):
        name, _, value = item.partition(b"=")
        args.setdefault(name, value)
    return args


class EngineIOResource(Resource):
    """Serves the Engine.IO endpoint for both transports."""

    isLeaf = True
    log = Logger()

    def __init__(self, engine: EngineServer, ws_factory: EngineWebSocketFactory, paths: Iterable[bytes] = ()) -> None:
        super().__init__()
        self.engine = engine
        self._ws_factory = ws_factory
        #: The request paths this resource serves (``/socket.io/``), for :meth:`upgrade`.
        self._paths = frozenset(b"/" + path + b"/" for path in paths)

    def upgrade(self, head: Head, connection: Any) -> bool:
        """Open a WebSocket straight from a connection's first read, if it asks for nothing else.

        Only a new session's open, allowed by the CORS policy, with a valid
        handshake; any other request (False) goes to the HTTP site, which
        :meth:`render` answers, refusals included.
        """
        if head.path not in self._paths:
            return False
        args = _plain_args(head.query)
        if args is None or args.get(b"EIO") != b"4" or args.get(b"transport") != b"websocket" or b"sid" in args:
            return False
        origins = head.fields.get(b"origin")
        if origins is not None and not origin_allowed(origins[0].decode("latin-1"), self.engine.options.cors_origins):
            return False
        try:
            accept = check_handshake(b"GET", b"HTTP/1.1", head.uri, head.fields.get)
        except HandshakeRefused:
            return False
        websocket = self._ws_factory.buildProtocol(connection.getPeer())
        take_over(connection, websocket)
        websocket.open_upgraded(accept)
        return True

    def render(self, request: Request) -> object:
        origin_header = request.getHeader(b"origin")
        origin = origin_header.decode("latin-1") if origin_header else None
        if not origin_allowed(origin, self.engine.options.cors_origins):
            return self._error(request, FORBIDDEN, status=403)
        vary = []
        if origin is not None:
            # An empty corsPolicyOrigin means any origin: a web app on its own
            # origin works with a default client, long-polling included.
            request.setHeader(b"access-control-allow-origin", origin_header)
            request.setHeader(b"access-control-allow-credentials", b"true")
            vary.append(b"Origin")
        if request.method == b"OPTIONS":
            request.setHeader(b"access-control-allow-methods", CORS_METHODS)
            asked = request.getHeader(b"access-control-request-headers")
            if asked:
                request.setHeader(b"access-control-allow-headers", asked)
            vary.append(b"Access-Control-Request-Headers")
            request.setHeader(b"vary", b", ".join(vary))
            request.setResponseCode(204)
            return b""
        if vary:
            request.setHeader(b"vary", b", ".join(vary))

        if _arg(request, b"EIO") != "4":
            return self._error(request, UNSUPPORTED_PROTOCOL_VERSION)
        transport = _arg(request, b"transport")
        if transport == "websocket":
            return self._websocket(request)
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

    def _websocket(self, request: Request) -> object:
        """Answer the WebSocket opening handshake and give the connection to a new protocol."""
        try:
            accept = check_opening_handshake(request)
        except HandshakeRefused as refused:
            self.log.debug("WebSocket handshake refused: {reason}", reason=refused.reason)
            for name, value in refused.headers:
                request.setHeader(name, value)
            return self._error(request, BAD_REQUEST, status=refused.status)
        probed = None
        sid = _arg(request, b"sid")
        if sid is not None:
            probed = self.engine.find(sid)
            if probed is None:
                return self._error(request, UNKNOWN_SID)
        websocket = self._ws_factory.buildProtocol(request.getClientAddress())
        if probed is not None:
            websocket.probe(probed)
        hand_over(request, websocket)
        websocket.open_upgraded(accept)
        return NOT_DONE_YET

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
    children: Optional[Mapping[bytes, Resource]] = None,
) -> FirstRequestFactory:
    """A Site serving Engine.IO under each of ``paths``, and ``children``
    (e.g. the demo page) beside it; 404 elsewhere. A WebSocket open is
    answered before the Site parses it."""
    paths = tuple(paths)
    root = Resource()
    endpoint = EngineIOResource(engine, EngineWebSocketFactory(engine), paths)
    for path in paths:
        root.putChild(path, endpoint)
    for name, child in (children or {}).items():
        root.putChild(name, child)
    return FirstRequestFactory(QuietSite(root), endpoint.upgrade, engine.clock)
