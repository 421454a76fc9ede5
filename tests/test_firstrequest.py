"""A connection's first read, answered before Twisted Web parses it.

The plain WebSocket open is taken aside; every other first read goes to the
HTTP site as it came. The check that matters: whatever a client sends, the
answer is the one Twisted Web's channel gives when the same bytes arrive in
two reads (which never take the short way), over the thousands of single and
paired changes to a good handshake the handshake tests use.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from jsongle.engineio.firstrequest import MAX_HEAD, FirstRequest, read_head
from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.websocket import EngineWebSocketProtocol
from jsongle.randompool import RandomPool, SessionIds
from tests.test_wshandshake import PEER, TCPLike, _changed, changed_handshakes, request_bytes

# The site's 404 for paths it does not serve is Twisted Web's NoResource, deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:twisted.web.resource")

CLIENT_HEAD = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Host: 127.0.0.1:8080\r\nX-Forwarded-For:  10.0.0.1 \r\nX-Forwarded-For: 10.0.0.2\r\n\r\n"
)


def test_a_client_head_is_read_as_twisted_web_reads_it():
    head = read_head(CLIENT_HEAD)
    assert head is not None
    assert (head.path, head.query, head.uri) == (
        b"/socket.io/", b"EIO=4&transport=websocket", b"/socket.io/?EIO=4&transport=websocket",
    )
    assert head.fields[b"sec-websocket-key"] == [b"dGhlIHNhbXBsZSBub25jZQ=="]
    assert head.fields[b"x-forwarded-for"] == [b"10.0.0.1", b"10.0.0.2"]
    assert head.fields[b"host"] == [b"127.0.0.1:8080"]


@pytest.mark.parametrize(
    "data",
    [
        CLIENT_HEAD[:-2],  # the head not finished
        CLIENT_HEAD + b"\x81",  # something after it
        CLIENT_HEAD.replace(b"GET ", b"POST "),
        CLIENT_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
        CLIENT_HEAD.replace(b"GET /", b"GET  /"),
        CLIENT_HEAD.replace(b"Host:", b"Host :"),
        CLIENT_HEAD.replace(b"Host: 127.0.0.1:8080\r\n", b"Host:\r\n 127.0.0.1:8080\r\n"),  # line folding
        CLIENT_HEAD.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.\xe9"),
        CLIENT_HEAD.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.\x00"),
        CLIENT_HEAD.replace(b"\r\nHost", b"\nHost"),
        CLIENT_HEAD.replace(b"Host: 127.0.0.1:8080\r\n", b"Host\r\n"),
        CLIENT_HEAD.replace(b"Host:", b"Content-Length: 0\r\nHost:"),
        CLIENT_HEAD.replace(b"Host:", b"Transfer-Encoding: chunked\r\nHost:"),
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\r\n",  # no field at all
        CLIENT_HEAD.replace(b"Host:", b"X-Pad: " + b"a" * MAX_HEAD + b"\r\nHost:"),
        b"\r\n" + CLIENT_HEAD,
    ],
    ids=[
        "partial", "bytes after", "POST", "HTTP/1.0", "two spaces", "space before colon", "folded line",
        "byte past ASCII", "NUL", "bare LF", "no colon", "Content-Length", "Transfer-Encoding", "no fields",
        "too long", "leading blank line",
    ],
)
def test_anything_out_of_the_ordinary_is_not_read(data):
    assert read_head(data) is None


def engine_connection(cors_origins: tuple[str, ...] = ()) -> tuple[TCPLike, EngineServer, FirstRequest, Clock]:
    clock = Clock()
    engine = EngineServer(EngineOptions(cors_origins=cors_origins), clock, lambda session: None, SessionIds(RandomPool()))
    connection = TCPLike(peerAddress=PEER)
    first = engineio_site(engine).buildProtocol(PEER)
    connection.protocol = first
    first.makeConnection(connection)
    return connection, engine, first, clock


def answer(data: bytes, reads: int, cors_origins: tuple[str, ...] = ()) -> tuple[bytes, int, bool]:
    """What the daemon's site answers ``data`` sent in one read or two: its
    head (the Date field out), how many sessions it opened, whether the
    WebSocket took the connection."""
    connection, engine, _, _ = engine_connection(cors_origins)
    cut = data.index(b"\r\n") + 2 if reads == 2 else len(data)
    for part in (data[:cut], data[cut:]):
        if part:
            connection.protocol.dataReceived(part)
    head = connection.value().partition(b"\r\n\r\n")[0]
    kept = b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:"))
    return kept, len(engine), isinstance(connection.protocol, EngineWebSocketProtocol)


def test_the_plain_open_takes_the_short_way():
    connection, engine, first, clock = engine_connection()
    connection.protocol.dataReceived(request_bytes())
    assert isinstance(connection.protocol, EngineWebSocketProtocol) and len(engine) == 1
    # No HTTP channel was made: nothing was ever its producer, no timer of its own is left.
    assert connection.producer is not None and connection.producer is not first
    assert [call for call in clock.getDelayedCalls() if call.func == first._timed_out] == []


def _cases() -> list[bytes]:
    extra = [
        request_bytes(),
        request_bytes(path="/socket.io/?EIO=3&transport=websocket"),
        request_bytes(path="/socket.io/?transport=websocket&EIO=4&t=x"),
        request_bytes(path="/socket.io/?EIO=4&transport=websocket&EIO=3"),
        request_bytes(path="/socket.io/?EIO=%34&transport=websocket"),
        request_bytes(path="/socket.io/?EIO=4&transport=polling"),
        request_bytes(path="/socket.io/?EIO=4&transport=websocket&sid=nope"),
        request_bytes(path="/socket.io?EIO=4&transport=websocket"),
        request_bytes(path="/socket.io/x?EIO=4&transport=websocket"),
        request_bytes(path="/demo/"),
        request_bytes(Origin="https://app.example"),
        request_bytes(Origin="https://elsewhere.example"),
    ]
    return [_changed(changes) for changes in changed_handshakes()] + extra


def test_every_first_read_gets_the_answer_twisted_web_gives():
    cases = _cases()
    assert len(cases) > 1500
    taken = 0
    for data in cases:
        for cors in ((), ("https://app.example",)):
            short = answer(data, 1, cors)
            assert short == answer(data, 2, cors), data
            taken += short[2]
    # Both ways were tried: the plain open and its harmless variants open a WebSocket.
    assert 50 < taken < len(cases)


def test_a_silent_connection_is_dropped_after_the_http_idle_timeout():
    connection, engine, first, clock = engine_connection()
    clock.advance(59)
    assert not connection.disconnecting
    clock.advance(1)
    assert connection.disconnecting and connection.protocol is first


def test_a_connection_lost_before_its_first_read_leaves_no_timer():
    connection, engine, first, clock = engine_connection()
    first.connectionLost(None)
    assert clock.getDelayedCalls() == []
