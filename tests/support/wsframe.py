"""Hand-made WebSocket frames for tests: build client frames, read server frames.

Deliberately independent of the server's own frame code, so a test can send
exactly the bytes it means (bad ones too) and check exactly what came back.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from typing import NamedTuple, Optional

from twisted.internet.testing import StringTransport

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MASK = b"\x37\xfa\x21\x3d"


class Frame(NamedTuple):
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> Optional[int]:
        return struct.unpack("!H", self.payload[:2])[0] if self.opcode == CLOSE and len(self.payload) >= 2 else None


def frame(
    payload: bytes | str,
    opcode: int = TEXT,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: Optional[bytes] = MASK,
    length_bits: Optional[int] = None,
) -> bytes:
    """One client frame; ``length_bits`` (7, 16, 64) forces a length encoding."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    size = len(payload)
    if length_bits is None:
        length_bits = 7 if size < 126 else 16 if size < 0x10000 else 64
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    masked = 0x80 if mask is not None else 0
    if length_bits == 7:
        head = bytes((first, masked | size))
    elif length_bits == 16:
        head = bytes((first, masked | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, masked | 127)) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + body


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(struct.pack("!H", code) + reason, CLOSE)


def parse_server_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Complete unmasked frames at the start of ``data``, and the bytes left."""
    frames = []
    offset = 0
    while len(data) - offset >= 2:
        first, second = data[offset], data[offset + 1]
        assert not second & 0x80, "a server frame must not be masked"
        size = second & 0x7F
        head = 2
        if size == 126:
            if len(data) - offset < 4:
                break
            size = struct.unpack("!H", data[offset + 2 : offset + 4])[0]
            head = 4
        elif size == 127:
            if len(data) - offset < 10:
                break
            size = struct.unpack("!Q", data[offset + 2 : offset + 10])[0]
            head = 10
        if len(data) - offset < head + size:
            break
        payload = data[offset + head : offset + head + size]
        frames.append(Frame(bool(first & 0x80), first & 0x0F, payload))
        offset += head + size
    return frames, data[offset:]


class ServerTransport(StringTransport):
    """A server connection in memory: like a real TCP transport, it lets Autobahn
    unregister a producer it never set."""

    def unregisterProducer(self) -> None:
        self.producer = None


def handshake_request(path: str = "/", host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")


class RawClient:
    """A WebSocket client on a plain socket: sends any bytes, reads frames."""

    def __init__(self, port: int, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self._buffer = b""
        self.closed = False
        self.sock.sendall(handshake_request(path))
        while b"\r\n\r\n" not in self._buffer:
            self._fill(time.monotonic() + timeout)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"handshake refused: {head!r}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            raise ConnectionError("the server closed the TCP connection")
        self._buffer += chunk

    def next_frame(self, timeout: Optional[float] = None) -> Frame:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            frames, _ = parse_server_frames(self._buffer)
            if frames:
                first = frames[0]
                size = len(first.payload)
                head = 2 if size < 126 else 4 if size < 0x10000 else 10
                self._buffer = self._buffer[head + size :]
                return first
            self._fill(deadline)

    def next_close(self, timeout: Optional[float] = None) -> Frame:
        """Skip data frames up to the server's Close frame."""
        while True:
            received = self.next_frame(timeout)
            if received.opcode == CLOSE:
                return received

    def wait_closed(self, timeout: Optional[float] = None, clean: bool = False) -> None:
        """Wait for the server to drop TCP (after the closing handshake);
        ``clean``: with a FIN after everything it sent, not a reset."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
        except ConnectionResetError:
            if clean:
                raise AssertionError("the server reset the connection instead of closing it") from None
        except ConnectionError:
            return

    def close(self) -> None:
        self.sock.close()
