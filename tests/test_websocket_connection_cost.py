"""What a WebSocket connection costs: only what it needs, kept or computed.

Every held client costs memory: once Autobahn has taken the TCP connection
over, the HTTP channel, its request and headers must be free to go.  Every
new connection copies the factory's options, and nothing more.
"""

from __future__ import annotations

import gc

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Request

from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.websocket import EngineWebSocketFactory

MARKER = b"held-request-check"


class UpgradingClient(protocol.Protocol):
    """Opens an Engine.IO WebSocket by hand and reports the first frame."""

    def __init__(self, opened: defer.Deferred) -> None:
        self.opened = opened
        self.buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /socket.io/?EIO=4&transport=websocket&t=" + MARKER + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, separator, frames = self.buffer.partition(b"\r\n\r\n")
        if separator and len(frames) >= 3 and not self.opened.called:
            self.opened.callback((head, frames))


@pytest_twisted.inlineCallbacks
def test_an_open_websocket_lets_go_of_its_http_request_and_handshake():
    engine = EngineServer(EngineOptions(), reactor, on_open=lambda session: None)
    port = reactor.listenTCP(0, engineio_site(engine), interface="127.0.0.1")
    opened: defer.Deferred = defer.Deferred()
    client = yield protocol.ClientCreator(reactor, UpgradingClient, opened).connectTCP(
        "127.0.0.1", port.getHost().port
    )
    try:
        head, frames = yield opened
        assert head.startswith(b"HTTP/1.1 101")
        assert frames[0] == 0x81 and frames[2:3] == b"0"  # a text frame: the Engine.IO open packet
        assert len(engine) == 1
        (session,) = list(engine)
        websocket = session.transport
        assert {name: getattr(websocket, name) for name in websocket.HANDSHAKE_STATE} == dict.fromkeys(
            websocket.HANDSHAKE_STATE
        )
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, Request) and MARKER in (o.uri or b"")]
        assert held == []
    finally:
        engine.close_all()
        client.transport.loseConnection()
        yield port.stopListening()


def test_a_new_connection_takes_the_factory_options():
    engine = EngineServer(EngineOptions(max_payload=12345), Clock(), on_open=lambda session: None)
    factory = EngineWebSocketFactory(engine)
    websocket = factory.buildProtocol(None)
    websocket.makeConnection(StringTransport())
    for name in websocket.FACTORY_OPTIONS:
        if name != "tcpNoDelay":  # set on the class: Autobahn reads it too early otherwise
            assert getattr(websocket, name) == getattr(factory, name), name
    assert (websocket.maxFramePayloadSize, websocket.maxMessagePayloadSize, websocket.tcpNoDelay) == (12345, 12345, True)
