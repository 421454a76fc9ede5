"""WebSocket frames of every kind against the running daemon, on raw sockets.

The fast path takes single masked text frames; these tests send the other
kinds (fragments, pings, several frames per write, byte-by-byte writes, bad
frames) through the real server and check the answers, and that a bad frame
closes that client only, with the RFC 6455 close code.
"""

from __future__ import annotations

import json

import pytest

from tests.support.wsframe import (
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawClient,
    close_frame,
    frame,
)

MAX_PAYLOAD = 1000
CONFIG = {"maxPayload": MAX_PAYLOAD, "maxConcurrentUsers": 50}
PATH = "/socket.io/?EIO=4&transport=websocket"


def open_engine(port: int) -> RawClient:
    """A raw WebSocket with its Engine.IO open packet read."""
    client = RawClient(port, PATH)
    opened = client.next_frame()
    assert opened.opcode == TEXT and opened.payload.startswith(b"0{"), opened
    assert json.loads(opened.payload[1:])["maxPayload"] == MAX_PAYLOAD
    return client


def text_frames(client: RawClient, count: int) -> list[tuple[int, bytes]]:
    return [(f.opcode, f.payload) for f in (client.next_frame() for _ in range(count))]


def test_fragments_pings_and_split_writes_reach_the_session(daemon_factory):
    daemon = daemon_factory(CONFIG)
    client = open_engine(daemon.ws_port)
    try:
        # Socket.IO CONNECT in three fragments with a ping among them, written
        # one byte at a time.
        data = (
            frame('40{"appTo', fin=False)
            + frame(b"are you there", PING)
            + frame('ken":"test-', CONTINUATION, fin=False)
            + frame('token"}', CONTINUATION)
        )
        for i in range(len(data)):
            client.send(data[i : i + 1])
        assert client.next_frame() == (True, PONG, b"are you there")
        connected = client.next_frame()
        assert connected.payload.startswith(b'40{"sid":'), connected
        hello = client.next_frame()
        assert hello.payload.startswith(b'42["jsongle"') and b"session-hello" in hello.payload
        # Several frames in one write, a control frame among them: answers in order.
        client.send(frame("2a") + frame("2b") + frame(b"", PING) + frame("2c"))
        assert text_frames(client, 4) == [(TEXT, b"3a"), (TEXT, b"3b"), (PONG, b""), (TEXT, b"3c")]
        # Frames with a 16-bit length, in one write.
        client.send(frame("2" + "x" * 300) + frame("2" + "y" * 300, length_bits=16))
        assert text_frames(client, 2) == [(TEXT, b"3" + b"x" * 300), (TEXT, b"3" + b"y" * 300)]
        client.send(close_frame(1000))
        assert client.next_close().close_code == 1000
        client.wait_closed()
    finally:
        client.close()


BAD_FRAMES = {
    "invalid UTF-8": (frame(b"4\xff\xfe"), 1007),
    "invalid UTF-8 in fragments": (frame(b"4ok", fin=False) + frame(b"\xed\xa0\x80", CONTINUATION), 1007),
    "reserved bit": (frame("2x", rsv=4), 1002),
    "reserved opcode": (frame("2x", 0x3), 1002),
    "unmasked frame": (frame("2x", mask=None), 1002),
    "continuation outside a message": (frame("2x", CONTINUATION), 1002),
    "64-bit length for a small frame": (frame("2x", length_bits=64), 1002),
    "16-bit length under 126": (frame("2x", length_bits=16), 1002),
    "frame over maxPayload": (frame("4" + "x" * MAX_PAYLOAD), 1009),
    "64-bit frame over maxPayload": (frame("4" + "x" * 70000), 1009),
    "fragments over maxPayload": (frame("4" + "x" * 600, fin=False) + frame("y" * 600, CONTINUATION), 1009),
    "not an Engine.IO packet": (frame("9"), 1008),
}


def test_bad_frames_close_that_client_only_with_the_rfc_code(daemon_factory):
    daemon = daemon_factory(CONFIG)
    bystander = open_engine(daemon.ws_port)
    try:
        for name, (data, code) in BAD_FRAMES.items():
            client = open_engine(daemon.ws_port)
            try:
                # A good frame first, in the same write: it is answered before the close.
                client.send(frame("2first") + data)
                assert client.next_frame() == (True, TEXT, b"3first"), name
                closing = client.next_close()
                assert closing.close_code == code, (name, closing)
                client.send(close_frame(1000))
                client.wait_closed()
            finally:
                client.close()
            bystander.send(frame("2still"))
            assert bystander.next_frame() == (True, TEXT, b"3still"), name
    finally:
        bystander.close()
    print(f"{len(BAD_FRAMES)} bad frame kinds each closed their client only")


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_a_stream_of_frames_in_odd_chunks(daemon_factory, chunk):
    daemon = daemon_factory(CONFIG)
    client = open_engine(daemon.ws_port)
    try:
        data = b"".join(frame(f"2n{i}" + "z" * (i * 37 % 200)) for i in range(20))
        for i in range(0, len(data), chunk):
            client.send(data[i : i + chunk])
        answers = text_frames(client, 20)
        assert answers == [(TEXT, f"3n{i}".encode() + b"z" * (i * 37 % 200)) for i in range(20)]
    finally:
        client.close()


def test_the_close_handshake_ends_with_a_clean_tcp_close(daemon_factory):
    """The server answers a Close frame and closes TCP with a FIN once its
    answer is out, alone or behind the answers of frames read with it."""
    daemon = daemon_factory(CONFIG)
    for before in (b"", frame("2x"), frame(b"hi", PING)):
        client = open_engine(daemon.ws_port)
        try:
            client.send(before + close_frame(1000))
            if before:
                assert client.next_frame().payload in (b"3x", b"hi")
            assert client.next_close().close_code == 1000
            client.wait_closed(clean=True)
        finally:
            client.close()
