"""The WebSocket opening handshake we answer ourselves, on proto_helpers.

Requests are parsed by Twisted Web's real HTTP channel, as in the daemon;
each refusal RFC 6455 (4.2.1) asks for is checked, then the hand-over of the
connection to the WebSocket protocol and the state it opens in: Autobahn's
close handshake and control frames must work on it.
"""

from __future__ import annotations

import itertools
import json
from typing import Optional

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from jsongle.engineio.backpressure import OutgoingBudget
from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.websocket import EngineWebSocketProtocol
from jsongle.engineio.wsframes import FastFrameProtocol, protocol_options
from jsongle.engineio.wshandshake import HandshakeRefused, accept_key, check_opening_handshake
from jsongle.randompool import RandomPool, SessionIds
from tests.support.wsframe import CLOSE, PING, PONG, TEXT, ServerTransport, close_frame, frame, parse_server_frames

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
#: RFC 6455, 1.3: the example key and the answer it must get.
RFC_KEY, RFC_ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GOOD = {
    "Host": "127.0.0.1:8080",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": RFC_KEY.decode(),
    "Sec-WebSocket-Version": "13",
}


def request_bytes(
    path: str = "/socket.io/?EIO=4&transport=websocket",
    method: str = "GET",
    version: str = "HTTP/1.1",
    extra: tuple[str, ...] = (),
    **headers: Optional[str],
) -> bytes:
    """The good handshake, with header fields replaced (None: left out) or ``extra`` lines added."""
    fields = {**GOOD, **{name.replace("_", "-"): value for name, value in headers.items()}}
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    return ("\r\n".join(lines + list(extra)) + "\r\n\r\n").encode("latin-1")


class Capture(Resource):
    """Keeps every request Twisted Web parsed."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> bytes:
        self.requests.append(request)
        return b""


def parsed(data: bytes) -> Request:
    """``data`` as Twisted Web's HTTP channel parses it."""
    capture = Capture()
    channel = Site(capture).buildProtocol(PEER)
    channel.makeConnection(StringTransport(peerAddress=PEER))
    channel.dataReceived(data)
    (request,) = capture.requests
    return request


def test_accept_key_of_the_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


@pytest.mark.parametrize(
    "request_data",
    [
        request_bytes(),
        request_bytes(Upgrade="WebSocket"),
        request_bytes(Upgrade="h2c, websocket"),
        request_bytes(Connection="keep-alive, Upgrade"),
        request_bytes(Connection="UPGRADE"),
        request_bytes(Host="example.com"),
        request_bytes(Host="[::1]"),
        request_bytes(Host="[::1]:443"),
        request_bytes(Origin="https://app.example"),
        request_bytes(Origin="http://[::1]:8080"),
        # Opaque origins: a page from a file (Firefox, Chrome) or a sandboxed frame.
        request_bytes(Origin="null"),
        request_bytes(Origin="file://"),
        request_bytes(Sec_WebSocket_Protocol="a, b"),
        request_bytes(Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits"),
        # Extensions we do not offer are ignored, however they are offered
        # (RFC 7692, 5: an offer is declined, not the connection; RFC 6455,
        # 11.3.2: the field may appear several times).
        request_bytes(Sec_WebSocket_Extensions="permessage-deflate; no_such_parameter"),
        request_bytes(Sec_WebSocket_Extensions="x-one", extra=("Sec-WebSocket-Extensions: x-two",)),
    ],
    ids=[
        "plain", "Upgrade WebSocket", "Upgrade list", "Connection list", "Connection upper case",
        "Host name", "Host IPv6", "Host IPv6 port", "Origin", "Origin IPv6", "Origin null", "Origin file", "subprotocols",
        "permessage-deflate offer", "bad permessage-deflate offer", "two extension fields",
    ],
)
def test_a_valid_handshake_gets_its_accept_key(request_data):
    assert check_opening_handshake(parsed(request_data)) == RFC_ACCEPT


VERSION_13 = ((b"sec-websocket-version", b"13"),)


@pytest.mark.parametrize(
    "request_data, status, answer_headers",
    [
        (request_bytes(method="POST"), 405, ((b"allow", b"GET"),)),
        (request_bytes(version="HTTP/1.0"), 400, ()),
        (request_bytes(path="/socket.io/?EIO=4&transport=websocket#top"), 400, ()),
        (request_bytes(Host=None), 400, ()),
        (request_bytes(extra=("Host: other.example",)), 400, ()),
        (request_bytes(Host="127.0.0.1:http"), 400, ()),
        (request_bytes(Host="127.0.0.1:"), 400, ()),
        (request_bytes(Upgrade=None), 400, ()),
        (request_bytes(Upgrade="h2c"), 400, ()),
        (request_bytes(Connection=None), 400, ()),
        (request_bytes(Connection="keep-alive"), 400, ()),
        (request_bytes(Sec_WebSocket_Version=None), 400, VERSION_13),
        (request_bytes(Sec_WebSocket_Version="8"), 400, VERSION_13),
        (request_bytes(Sec_WebSocket_Version="99"), 400, VERSION_13),
        (request_bytes(Sec_WebSocket_Version="013"), 400, VERSION_13),
        (request_bytes(extra=("Sec-WebSocket-Version: 13",)), 400, VERSION_13),
        (request_bytes(Sec_WebSocket_Key=None), 400, ()),
        (request_bytes(extra=("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",)), 400, ()),
        (request_bytes(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAA"), 400, ()),  # 15 bytes
        (request_bytes(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAAAAAA"), 400, ()),  # 18 bytes
        (request_bytes(Sec_WebSocket_Key="AAAAAAAAAAAAAAAAAAAAA*=="), 400, ()),
        (request_bytes(Sec_WebSocket_Key=""), 400, ()),
        (request_bytes(Origin="https://a.example", extra=("Origin: https://b.example",)), 400, ()),
        (request_bytes(Origin="no-host-here"), 400, ()),
        (request_bytes(Origin="https://app.example:99999"), 400, ()),
        (request_bytes(Sec_WebSocket_Protocol="a, b", extra=("Sec-WebSocket-Protocol: a",)), 400, ()),
    ],
    ids=[
        "POST", "HTTP/1.0", "fragment", "no Host", "two Hosts", "Host port not a number", "Host port empty",
        "no Upgrade", "Upgrade h2c", "no Connection", "Connection keep-alive", "no version", "version 8",
        "version 99", "version 013", "two versions", "no key", "two keys", "key of 15 bytes",
        "key of 18 bytes", "key not base64", "empty key", "two Origins", "Origin without host",
        "Origin port out of range", "subprotocol offered twice",
    ],
)
def test_each_bad_handshake_is_refused(request_data, status, answer_headers):
    with pytest.raises(HandshakeRefused) as refused:
        check_opening_handshake(parsed(request_data))
    assert (refused.value.status, refused.value.headers) == (status, answer_headers)


# -- at least as strict as Autobahn's own handshake -----------------------------


def autobahn_accepts(data: bytes) -> bool:
    """Whether Autobahn's own handshake, with the daemon's options, opens for ``data``."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    # Opaque origins (null, file:) are the CORS policy's call, as in Node.js.
    factory.setProtocolOptions(**protocol_options(1000), allowNullOrigin=True)
    websocket = factory.buildProtocol(PEER)
    transport = ServerTransport(peerAddress=PEER)
    websocket.makeConnection(transport)
    websocket.dataReceived(data)
    return transport.value().startswith(b"HTTP/1.1 101")


#: Single changes to the good handshake: a header field's value (None:
#: left out), a line added, or another method, target or HTTP version.
_CHANGES: list[tuple[str, object]] = [
    *((f"Host={v!r}", ("Host", v)) for v in (None, "h", "h:80", "h:x", "h:", "h: 80", "h:-1", "[::1]", "[::1]:80", "")),
    *((f"Upgrade={v!r}", ("Upgrade", v)) for v in (None, "WebSocket", "h2c", "h2c, websocket", "websocket2", "")),
    *((f"Connection={v!r}", ("Connection", v)) for v in (None, "keep-alive", "keep-alive, upgrade", "upgrade2", "")),
    *((f"Version={v!r}", ("Sec_WebSocket_Version", v)) for v in (None, "8", "99", "013", "+13", "x", "")),
    *(
        (f"Key={v!r}", ("Sec_WebSocket_Key", v))
        for v in (None, "", "AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAA*==", "AAAAAAAAAAAAAAAAAAAAAAA=", "dGhlIHNhbXBsZSBub25jZR==")
    ),
    *(
        (f"Origin={v!r}", ("Origin", v))
        for v in ("null", "NULL", "file://", "file://host/x", "https://a.b", "nohost", "http://a:99999", "http://[::1", "http://:80")
    ),
    *((f"Protocol={v!r}", ("Sec_WebSocket_Protocol", v)) for v in ("a", "a, a", "a,b", "")),
    *(
        (f"+{line}", ("extra", line))
        for line in ("Host: x", "Origin: https://x", f"Sec-WebSocket-Key: {RFC_KEY.decode()}", "Sec-WebSocket-Version: 13",
                     "Upgrade: h2c", "Connection: close", "Sec-WebSocket-Protocol: a")
    ),
    ("POST", ("method", "POST")),
    ("HEAD", ("method", "HEAD")),
    ("query", ("path", "/x?a=1")),
    ("fragment", ("path", "/x#f")),
    ("fragment after query", ("path", "/x?a=1#f")),
    ("HTTP/1.0", ("version", "HTTP/1.0")),
]


def _changed(changes: tuple[tuple[str, object], ...]) -> bytes:
    options: dict = {"extra": ()}
    for _, (name, value) in changes:
        options[name] = options["extra"] + (value,) if name == "extra" else value
    return request_bytes(**options)


def changed_handshakes() -> list[tuple[tuple[str, object], ...]]:
    """Every single change and every pair of them (two values of one field aside)."""
    return [(change,) for change in _CHANGES] + [
        pair for pair in itertools.combinations(_CHANGES, 2) if pair[0][1][0] != pair[1][1][0] or pair[0][1][0] == "extra"
    ]


def test_what_autobahn_refused_is_refused():
    """Every single change to the good handshake and every pair of them
    (extensions aside: see above) that Autobahn's handshake refused with the
    daemon's options is refused."""
    cases = changed_handshakes()
    let_through = []
    for changes in cases:
        data = _changed(changes)
        try:
            check_opening_handshake(parsed(data))
        except HandshakeRefused:
            continue
        if not autobahn_accepts(data):
            let_through.append([label for label, _ in changes])
    assert let_through == []
    assert len(cases) > 1500


# -- the daemon's resource: refusal, hand-over, open ---------------------------


class TCPLike(StringTransport):
    """A connection whose protocol can be replaced, as a TCP transport's can."""

    protocol = None


def connect_to_engine(data: bytes, **options) -> tuple[TCPLike, EngineServer]:
    """Feed ``data`` to the daemon's HTTP site on a fresh connection."""
    engine = EngineServer(EngineOptions(**options), Clock(), lambda session: None, SessionIds(RandomPool()))
    connection = TCPLike(peerAddress=PEER)
    connection.protocol = engineio_site(engine).buildProtocol(PEER)
    connection.protocol.makeConnection(connection)
    connection.protocol.dataReceived(data)
    return connection, engine


def test_a_refusal_is_an_engineio_error_with_the_version_we_speak():
    connection, engine = connect_to_engine(request_bytes(Sec_WebSocket_Version="8"))
    head, _, body = connection.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nSec-Websocket-Version: 13" in head
    assert json.loads(body) == {"code": 3, "message": "Bad request"}
    assert len(engine) == 0


@pytest.mark.parametrize("origin", ["null", "file://"])
def test_an_opaque_origin_is_for_the_cors_policy_to_allow(origin):
    connection, engine = connect_to_engine(request_bytes(Origin=origin))
    assert connection.value().startswith(b"HTTP/1.1 101 ") and len(engine) == 1
    connection, engine = connect_to_engine(request_bytes(Origin=origin), cors_origins=("https://app.example",))
    assert connection.value().startswith(b"HTTP/1.1 403 ") and len(engine) == 0


def test_the_websocket_takes_the_connection_over_and_speaks_rfc_6455():
    connection, engine = connect_to_engine(request_bytes())
    websocket = connection.protocol
    assert isinstance(websocket, EngineWebSocketProtocol)
    head, _, rest = connection.value().partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT,
    ]
    frames, left = parse_server_frames(rest)
    assert left == b"" and [(f.opcode, f.payload[:1]) for f in frames] == [(TEXT, b"0")]  # Engine.IO open
    assert len(engine) == 1 and websocket.state == WebSocketProtocol.STATE_OPEN
    assert websocket.is_open.called
    # The HTTP channel is no longer the producer; the WebSocket's budget is.
    assert isinstance(connection.producer, OutgoingBudget)
    connection.clear()
    # Autobahn's parser answers control frames and the close handshake.
    websocket.dataReceived(frame(b"hi", PING))
    assert [(f.opcode, f.payload) for f in parse_server_frames(connection.value())[0]] == [(PONG, b"hi")]
    connection.clear()
    websocket.dataReceived(close_frame(1000))
    assert [(f.opcode, f.close_code) for f in parse_server_frames(connection.value())[0]] == [(CLOSE, 1000)]
    assert connection.disconnecting
    (session,) = list(engine)
    websocket.connectionLost(Failure(ConnectionDone()))
    assert session.closed


class Broken(FastFrameProtocol):
    """A subclass whose onOpen has a bug."""

    events: list = []
    _log = Logger(observer=events.append)

    def onOpen(self) -> None:
        raise ValueError("a bug")


def test_a_failing_onopen_fails_that_connection_only():
    factory = WebSocketServerFactory()
    factory.protocol = Broken
    factory.setProtocolOptions(**{**protocol_options(1000), "closeHandshakeTimeout": 0})
    websocket = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    websocket.makeConnection(transport)
    websocket.open_upgraded(RFC_ACCEPT)
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert [(f.opcode, f.close_code) for f in parse_server_frames(rest)[0]] == [(CLOSE, 1011)]
    assert [event["log_failure"].type for event in Broken.events] == [ValueError]
