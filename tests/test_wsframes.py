"""The WebSocket fast path and its hand-over to Autobahn, on proto_helpers.

A frame the fast path takes never reaches Autobahn's ``onMessage``; every other
kind (control frames, fragments, reserved bits and opcodes, unmasked frames,
64-bit or non-minimal lengths, oversized frames) must be handed over with the
bytes after it, so Autobahn answers exactly as RFC 6455 asks. Our protocols
are opened as the daemon opens them (``open_upgraded``); the reference is
Autobahn alone, opened by its own handshake.
"""

from __future__ import annotations

import struct
from collections import deque

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address

from jsongle.engineio.wsframes import (
    NEED_MORE,
    NOT_SIMPLE,
    FastFrameProtocol,
    frame_header,
    next_frame,
    _unmask_with_integers,
    protocol_options,
    unmask,
)
from jsongle.engineio.wshandshake import accept_key
from tests.support.wsframe import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ServerTransport,
    close_frame,
    frame,
    handshake_request,
    parse_server_frames,
)

LIMIT = 1000


class Recorder(FastFrameProtocol):
    """Records each message, and which ones Autobahn's parser delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str | bytes] = []
        self.via_autobahn: list[bytes] = []

    def message_received(self, message: str | bytes) -> None:
        self.messages.append(message)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.via_autobahn.append(payload)
        super().onMessage(payload, isBinary)


class Connection:
    """An open WebSocket on a StringTransport, opened as the daemon opens one."""

    def __init__(self, limit: int = LIMIT) -> None:
        protocol, self.transport = _open(Recorder, limit)
        self.protocol: Recorder = protocol

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.dataReceived(chunk)

    def sent(self) -> list:
        frames, rest = parse_server_frames(self.transport.value())
        assert rest == b""
        self.transport.clear()
        return frames

    @property
    def state(self) -> int:
        return self.protocol.state


def test_simple_frames_in_one_read_take_the_fast_path():
    conn = Connection()
    conn.feed(frame("a") + frame(b"\x00\xff", BINARY) + frame("é" * 200) + frame(""))
    assert conn.protocol.messages == ["a", b"\x00\xff", "é" * 200, ""]
    assert conn.protocol.via_autobahn == []
    assert conn.sent() == []


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 130])
def test_frames_split_across_reads(chunk):
    conn = Connection()
    data = frame("hello") + frame("x" * 300) + frame(b"\x01", BINARY) + frame("end")
    conn.feed(*(data[i : i + chunk] for i in range(0, len(data), chunk)))
    assert conn.protocol.messages == ["hello", "x" * 300, b"\x01", "end"]
    assert conn.protocol.via_autobahn == []


def test_send_messages_writes_one_batch_of_unmasked_frames():
    conn = Connection()
    conn.protocol.send_messages([(b"one", False), (b"\x02" * 200, True), (b"t" * 70000, False)])
    assert len(conn.transport.io.getvalue()) > 0
    frames = conn.sent()
    assert [(f.fin, f.opcode, f.payload) for f in frames] == [
        (True, TEXT, b"one"),
        (True, BINARY, b"\x02" * 200),
        (True, TEXT, b"t" * 70000),
    ]


def test_send_frame_writes_one_unmasked_frame():
    conn = Connection()
    conn.protocol.send_frame(b"4", "é".encode())
    conn.protocol.send_frame(b"\x03" * 300, is_binary=True)
    assert [(f.fin, f.opcode, f.payload) for f in conn.sent()] == [(True, TEXT, "4é".encode()), (True, BINARY, b"\x03" * 300)]


def test_ping_is_answered_by_autobahn_between_fast_frames():
    conn = Connection()
    conn.feed(frame("a") + frame(b"p1", PING) + frame("b"))
    assert conn.protocol.messages == ["a", "b"]
    # After the ping Autobahn parsed the rest of that read ...
    assert conn.protocol.via_autobahn == [b"b"]
    assert [(f.opcode, f.payload) for f in conn.sent()] == [(PONG, b"p1")]
    # ... and the next read takes the fast path again.
    conn.feed(frame("c"))
    assert conn.protocol.messages[-1] == "c"
    assert conn.protocol.via_autobahn == [b"b"]


def test_unsolicited_pong_is_ignored():
    conn = Connection()
    conn.feed(frame(b"x", PONG) + frame("a"))
    assert conn.protocol.messages == ["a"]
    assert conn.sent() == []
    assert conn.state == WebSocketProtocol.STATE_OPEN


def test_close_is_answered_and_later_data_dropped():
    conn = Connection()
    conn.feed(frame("a") + close_frame(1000, b"bye") + frame("after"))
    assert conn.protocol.messages == ["a"]
    (reply,) = conn.sent()
    assert reply.opcode == CLOSE and reply.close_code == 1000
    assert conn.transport.disconnecting
    conn.feed(frame("later"))
    assert conn.protocol.messages == ["a"]


def test_a_close_asked_while_frames_are_held_waits_for_them():
    conn = Connection()
    conn.protocol._held = [b"held"]
    conn.protocol._closeConnection(abort=False)
    assert not conn.transport.disconnecting and conn.transport.value() == b""
    conn.protocol.flush_held()
    # Not a TCP socket: closed the usual way, after the held bytes.
    assert conn.transport.value() == b"held" and conn.transport.disconnecting


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_fragmented_message_is_reassembled_by_autobahn(chunk):
    conn = Connection()
    data = (
        frame("frag", fin=False)
        + frame(b"ping", PING)
        + frame("men", CONTINUATION, fin=False)
        + frame("ted", CONTINUATION)
        + frame("next")
    )
    conn.feed(*(data[i : i + chunk] for i in range(0, len(data), chunk)))
    assert conn.protocol.messages == ["fragmented", "next"]
    assert b"fragmented" in conn.protocol.via_autobahn
    assert [(f.opcode, f.payload) for f in conn.sent()] == [(PONG, b"ping")]


def test_large_message_with_64_bit_length_goes_to_autobahn():
    conn = Connection(limit=100000)
    conn.feed(frame("y" * 70000) + frame("z"))
    assert conn.protocol.messages == ["y" * 70000, "z"]
    assert conn.protocol.via_autobahn == [b"y" * 70000, b"z"]


def _fails_with(conn: Connection, code: int) -> None:
    frames = conn.sent()
    assert frames, "no Close frame sent"
    assert frames[-1].opcode == CLOSE and frames[-1].close_code == code
    assert conn.state in (WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED)


PROTOCOL_ERRORS = {
    "rsv1": frame("bad", rsv=4),
    "rsv2": frame("bad", rsv=2),
    "rsv3": frame("bad", rsv=1),
    "reserved data opcode": frame("bad", 0x3),
    "reserved control opcode": frame(b"", 0xB),
    "unmasked text": frame("bad", mask=None),
    "unmasked binary": frame(b"bad", BINARY, mask=None),
    "continuation outside a message": frame("bad", CONTINUATION),
    "text inside a fragmented message": frame("a", fin=False) + frame("b"),
    "fragmented ping": frame(b"", PING, fin=False),
    "ping over 125 bytes": frame(b"p" * 126, PING),
    "16-bit length under 126": frame("short", length_bits=16),
    "64-bit length under 65536": frame("short", length_bits=64),
    "close with a 1-byte body": frame(b"\x03", CLOSE),
}


@pytest.mark.parametrize("bad", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_protocol_errors_get_1002_after_earlier_messages(bad):
    conn = Connection()
    conn.feed(frame("before") + bad + frame("after"))
    assert conn.protocol.messages == ["before"]
    _fails_with(conn, 1002)


@pytest.mark.parametrize("size", [LIMIT + 1, 70000])
def test_frame_over_the_limit_gets_1009(size):
    conn = Connection()
    conn.feed(frame("ok") + frame("x" * size))
    assert conn.protocol.messages == ["ok"]
    _fails_with(conn, 1009)


def test_message_over_the_limit_in_fragments_gets_1009():
    conn = Connection()
    conn.feed(frame("x" * 600, fin=False) + frame("y" * 600, CONTINUATION))
    assert conn.protocol.messages == []
    _fails_with(conn, 1009)


def test_frame_at_the_limit_passes():
    conn = Connection()
    conn.feed(frame("x" * LIMIT))
    assert conn.protocol.messages == ["x" * LIMIT]
    assert conn.protocol.via_autobahn == []


@pytest.mark.parametrize(
    "data",
    [
        frame(b"ok \xff"),
        frame(b"\xed\xa0\x80"),  # a UTF-16 surrogate
        frame(b"\xc0\xaf"),  # overlong
        frame(b"caf\xc3"),  # cut inside a code point
    ],
    ids=["bad byte", "surrogate", "overlong", "truncated"],
)
def test_invalid_utf8_in_a_fast_frame_gets_1007(data):
    conn = Connection()
    conn.feed(frame("fine") + data + frame("after"))
    assert conn.protocol.messages == ["fine"]
    assert conn.protocol.via_autobahn == []
    _fails_with(conn, 1007)


def test_invalid_utf8_in_fragments_gets_1007_from_autobahn():
    conn = Connection()
    conn.feed(frame(b"ok", fin=False) + frame(b"\xed\xa0\x80", CONTINUATION, fin=False))
    assert conn.protocol.messages == []
    _fails_with(conn, 1007)


def test_binary_is_not_checked_for_utf8():
    conn = Connection()
    conn.feed(frame(b"\xff\xfe", BINARY))
    assert conn.protocol.messages == [b"\xff\xfe"]


def test_nothing_is_sent_once_closing():
    conn = Connection()
    conn.protocol.sendClose(1000)
    conn.sent()
    conn.protocol.send_messages([(b"late", False)])
    assert conn.transport.value() == b""


# -- the pure parts --------------------------------------------------------


def xor(mask: bytes, payload: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_unmask_is_xor(payload, mask):
    assert unmask(mask, payload) == xor(mask, payload)


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_unmask_without_the_speedups_is_xor_too(payload, mask):
    assert _unmask_with_integers(mask, payload) == xor(mask, payload)


def test_unmask_uses_the_c_speedups_the_requirements_install():
    # A silent fall-back to the pure-Python masking would cost up to a third
    # of the time of relaying an SDP offer.
    assert unmask is not _unmask_with_integers


@settings(deadline=None)
@given(st.sampled_from([0, 1, 125, 126, 65535, 65536, 70000]), st.booleans())
def test_frame_header_round_trips_through_a_reader(size, is_binary):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = frame_header(len(payload), is_binary) + payload
    ((fin, opcode, read),), rest = parse_server_frames(data)
    assert (fin, opcode, read, rest) == (True, BINARY if is_binary else TEXT, payload, b"")


@given(st.binary(max_size=400), st.booleans(), st.integers(min_value=0, max_value=420))
def test_next_frame_on_any_prefix(payload, is_binary, cut):
    data = frame(payload, BINARY if is_binary else TEXT)
    if cut >= len(data):
        assert next_frame(data, 0, 0) == (is_binary, payload, len(data))
    else:
        assert next_frame(data[:cut], 0, 0) == (NEED_MORE, b"", 0)


@pytest.mark.parametrize("bad", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
def test_next_frame_takes_no_protocol_error(bad):
    assert next_frame(bad, 0, LIMIT)[0] == NOT_SIMPLE


def test_next_frame_leaves_control_and_large_frames():
    for data in (frame(b"", PING), frame(b"", PONG), close_frame(1000), frame("x" * 70000)):
        assert next_frame(data, 0, 0)[0] == NOT_SIMPLE
    assert next_frame(frame("x" * 1001), 0, 1000)[0] == NOT_SIMPLE
    assert next_frame(frame("x" * 1000), 0, 1000)[:2] == (False, b"x" * 1000)
    assert struct.unpack("!H", frame_header(300, False)[2:])[0] == 300


# -- the fast path against Autobahn alone ----------------------------------


class Reference(WebSocketServerProtocol):
    """Autobahn's own parser only: what the fast path must match."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str | bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(payload if isBinary else payload.decode("utf-8"))


def _open(protocol_class: type, limit: int) -> tuple[WebSocketServerProtocol, ServerTransport]:
    """An open WebSocket: ours opened from an answered upgrade, Autobahn's alone by its own handshake."""
    factory = WebSocketServerFactory()
    factory.protocol = protocol_class
    # No close-handshake timer: these tests answer (or not) by hand.
    factory.setProtocolOptions(**{**protocol_options(limit), "closeHandshakeTimeout": 0})
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = factory.buildProtocol(peer)
    transport = ServerTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    if isinstance(protocol, FastFrameProtocol):
        protocol.open_upgraded(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="))
    else:
        protocol.dataReceived(handshake_request())
    head, _, rest = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert rest == b""
    assert protocol.state == WebSocketProtocol.STATE_OPEN
    transport.clear()
    return protocol, transport


def _answers(transport: ServerTransport) -> list[tuple[int, bytes | int | None]]:
    """What the server wrote: opcodes, with the code for Close (reasons differ)."""
    frames, _ = parse_server_frames(transport.value())
    return [(f.opcode, f.close_code if f.opcode == CLOSE else f.payload) for f in frames]


DIFF_LIMIT = 300
_texts = st.text(max_size=200)
_frames = st.one_of(
    _texts.map(frame),
    st.binary(max_size=200).map(lambda b: frame(b, BINARY)),
    st.binary(min_size=1, max_size=20).map(lambda b: frame(b"\xff" + b)),  # invalid UTF-8
    st.binary(max_size=20).map(lambda b: frame(b, PING)),
    st.binary(max_size=20).map(lambda b: frame(b, PONG)),
    st.just(close_frame(1000)),
    st.tuples(_texts, _texts).map(lambda t: frame(t[0], fin=False) + frame(t[1], CONTINUATION)),
    st.tuples(_texts, st.integers(1, 7)).map(lambda t: frame(t[0], rsv=t[1])),
    _texts.map(lambda t: frame(t, mask=None)),
    st.sampled_from([0x3, 0x7, 0xB, 0xF]).map(lambda op: frame(b"x", op)),
    _texts.filter(lambda t: len(t.encode()) < 126).map(lambda t: frame(t, length_bits=16)),
    _texts.map(lambda t: frame(t, length_bits=64)),
    st.integers(DIFF_LIMIT - 2, DIFF_LIMIT + 2).map(lambda n: frame("o" * n)),
    st.just(frame("x" * 400, fin=False)),
)


@settings(deadline=None)
@given(st.lists(_frames, max_size=8), st.lists(st.integers(1, 600), max_size=6))
def test_fast_path_answers_exactly_as_autobahn_alone(frames, cuts):
    """Any mix of frames, cut into any reads: the same messages and the same answers."""
    data = b"".join(frames)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    fast, fast_transport = _open(Recorder, DIFF_LIMIT)
    reference, reference_transport = _open(Reference, DIFF_LIMIT)
    for chunk in chunks:
        fast.dataReceived(chunk)
        reference.dataReceived(chunk)
    assert fast.messages == reference.messages
    assert _answers(fast_transport) == _answers(reference_transport)
    # Open alike. Once failing, Autobahn alone may drop TCP at once where the
    # fast path waits for the Close reply: it meets invalid UTF-8 twice (in
    # the frame and at its end) and treats the second as a failure during
    # the closing handshake.
    assert (fast.state == WebSocketProtocol.STATE_OPEN) == (reference.state == WebSocketProtocol.STATE_OPEN)


# -- the write batch -------------------------------------------------------


class Held:
    """Stands for a connection holding frames: records when it is flushed."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def flush_held(self) -> None:
        self.log.append(self.name)


def test_write_batch_sends_once_per_turn_in_first_write_order():
    from twisted.internet.task import Clock

    from jsongle.engineio.wsframes import WriteBatch

    clock = Clock()
    batch = WriteBatch(clock)
    log: list[str] = []
    batch.hold(Held("b", log))
    batch.hold(Held("a", log))
    assert log == [] and len(clock.getDelayedCalls()) == 1  # one flush for the whole turn
    clock.advance(0)
    assert log == ["b", "a"] and not clock.getDelayedCalls()
    batch.hold(Held("c", log))  # the next turn gets its own flush
    clock.advance(0)
    assert log == ["b", "a", "c"]



def test_write_batch_leaves_at_the_end_of_the_polls_events_when_the_poll_is_ours():
    from twisted.internet.task import Clock

    from jsongle.engineio.pollturns import PollTurns
    from jsongle.engineio.wsframes import WriteBatch

    clock = Clock()
    turns = PollTurns(reactor=None)
    batch = WriteBatch(clock, turns)
    log: list[str] = []
    turns.dispatching = True  # a read being handled
    batch.hold(Held("a", log))
    batch.hold(Held("b", log))
    assert log == [] and not clock.getDelayedCalls()  # no timer: the poll's end sends
    turns.dispatching = False
    (after,) = turns._after
    after()
    assert log == ["a", "b"]
    batch.hold(Held("c", log))  # written by a timer, outside the poll's events
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert log == ["a", "b", "c"]

# -- the lean connection set-up ------------------------------------------------


def _made(protocol_class: type) -> WebSocketServerProtocol:
    """A connection made (not yet upgraded), as the daemon's site makes one."""
    factory = WebSocketServerFactory()
    factory.protocol = protocol_class
    factory.setProtocolOptions(**protocol_options(LIMIT))
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = factory.buildProtocol(peer)
    protocol.makeConnection(ServerTransport(peerAddress=peer))
    return protocol


def test_set_up_reads_as_autobahns_own_but_stores_little():
    """Every attribute Autobahn's set-up gives a connection reads the same on ours
    (constants from the class, objects made on first use), and ours stores a
    few attributes where Autobahn's stores about fifty."""
    reference, ours = _made(Reference), _made(Recorder)
    stored = len(vars(ours))
    for name, expected in vars(reference).items():
        value = getattr(ours, name)
        if expected is None or isinstance(expected, (bool, int, bytes, str)):
            assert value == expected, name
        elif name in ("send_queue", "_valid_events"):
            assert list(value) == list(expected), name
        else:
            assert type(value) is type(expected), name
    assert ours.peer == reference.peer == "tcp4:127.0.0.1:40000"
    assert reference.factory.countConnections == ours.factory.countConnections == 1
    # Options are copied per connection here (a plain factory); the daemon's
    # factory makes them class attributes too.
    assert stored - len(Recorder.CONFIG_ATTRS) <= 6 and len(vars(reference)) - len(Reference.CONFIG_ATTRS) >= 30


def test_is_open_fires_even_when_first_asked_after_the_open():
    ours = _made(Recorder)
    waiting = ours.is_open
    assert not waiting.called
    ours.open_upgraded(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="))
    assert waiting.called
    assert _open(Recorder, LIMIT)[0].is_open.called


def test_autobahns_queued_writes_get_a_queue_of_their_own():
    first, transport = _open(Recorder, LIMIT)
    second, _ = _open(Recorder, LIMIT)
    first.sendData(b"queued", sync=True)
    assert isinstance(first.send_queue, deque) and b"queued" in transport.value()
    assert second.send_queue == () and Recorder.send_queue == ()
