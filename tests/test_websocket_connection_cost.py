"""What a WebSocket connection costs: only what it needs, kept or computed.

Every held client costs memory: once the WebSocket protocol has taken the
connection over, the HTTP channel, its request and headers must be free to
go, over TCP and over TLS (both ways the daemon serves it), and nothing of
the opening handshake stays on the protocol.  Every new connection copies
the factory's options, and nothing more.
"""

from __future__ import annotations

import dataclasses
import gc

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, ssl
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Request

from jsongle.config import DEFAULT_CONFIG
from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.websocket import EngineWebSocketFactory
from jsongle.randompool import RandomPool, SessionIds
from jsongle.tap import tls_options
from tests.support.tls import write_self_signed

MARKER = b"held-request-check"


class UpgradingClient(protocol.Protocol):
    """Opens an Engine.IO WebSocket by hand and reports the first frame."""

    def __init__(self, opened: defer.Deferred, field: bytes = b"") -> None:
        self.opened = opened
        self.buffer = b""
        self.field = field

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /socket.io/?EIO=4&transport=websocket&t=" + MARKER + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + self.field +
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, separator, frames = self.buffer.partition(b"\r\n\r\n")
        if separator and len(frames) >= 3 and not self.opened.called:
            self.opened.callback((head, frames))


def _listen(how: str, site, tmp_path):
    """Listen as the daemon does: plain TCP, TLS (useHTTPS), or TLS as a layer (useHTTPS with reusePort)."""
    if how == "tcp":
        return reactor.listenTCP(0, site, interface="127.0.0.1"), None
    key, cert = write_self_signed(tmp_path)
    options = tls_options(dataclasses.replace(DEFAULT_CONFIG, use_https=True, key=str(key), cert=str(cert)))
    if how == "tls":
        return reactor.listenSSL(0, site, options, interface="127.0.0.1"), ssl.CertificateOptions()
    return reactor.listenTCP(0, TLSMemoryBIOFactory(options, False, site), interface="127.0.0.1"), ssl.CertificateOptions()


#: A field only Twisted Web reads (a byte past ASCII): that request goes the HTTP channel's way.
VIA_HTTP = b"X-Note: caf\xe9\r\n"


@pytest.mark.parametrize("field", [b"", VIA_HTTP], ids=["first read", "via http"])
@pytest.mark.parametrize("how", ["tcp", "tls", "tls-layer"])
@pytest_twisted.inlineCallbacks
def test_an_open_websocket_lets_go_of_its_http_request_and_handshake(tmp_path, how, field):
    engine = EngineServer(EngineOptions(), reactor, lambda session: None, SessionIds(RandomPool()))
    port, client_tls = _listen(how, engineio_site(engine), tmp_path)
    opened: defer.Deferred = defer.Deferred()
    creator = protocol.ClientCreator(reactor, UpgradingClient, opened, field)
    address = ("127.0.0.1", port.getHost().port)
    if client_tls is None:
        client = yield creator.connectTCP(*address)
    else:
        client = yield creator.connectSSL(*address, client_tls)
    try:
        head, frames = yield opened
        assert head.startswith(b"HTTP/1.1 101")
        assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        assert frames[0] == 0x81 and frames[2:3] == b"0"  # a text frame: the Engine.IO open packet
        assert len(engine) == 1
        (session,) = list(engine)
        websocket = session.transport
        # Nothing of the request (its URI carries the marker) stays on the protocol ...
        assert [name for name, value in vars(websocket).items() if MARKER in repr(value).encode()] == []
        # ... nor anywhere else.
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, Request) and MARKER in (o.uri or b"")]
        assert held == []
    finally:
        engine.close_all()
        client.transport.loseConnection()
        yield port.stopListening()


def test_a_new_connection_takes_the_factory_options():
    engine = EngineServer(EngineOptions(max_payload=12345), Clock(), lambda session: None, SessionIds(RandomPool()))
    factory = EngineWebSocketFactory(engine)
    websocket = factory.buildProtocol(None)
    websocket.makeConnection(StringTransport())
    for name in websocket.FACTORY_OPTIONS:
        if name != "tcpNoDelay":  # set on the class: Autobahn reads it too early otherwise
            assert getattr(websocket, name) == getattr(factory, name), name
    assert (websocket.maxFramePayloadSize, websocket.maxMessagePayloadSize, websocket.tcpNoDelay) == (12345, 12345, True)
