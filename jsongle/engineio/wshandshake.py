"""The WebSocket opening handshake, answered from the request as it was read.

The request line and header fields of an upgrade request have been read
already, by Twisted Web or from the connection's first read
(:mod:`jsongle.engineio.firstrequest`); handing it to Autobahn meant
writing it back to bytes and parsing it all again, then building the answer
through a Deferred: most of what setting up a connection cost. Here the
request is checked where it lies (RFC 6455, 4.2.1, and at least what
Autobahn refused), the ``Sec-WebSocket-Accept`` value is computed, and the
connection is handed to the WebSocket protocol, which then writes the
``101`` itself (:meth:`jsongle.engineio.wsframes.FastFrameProtocol.open_upgraded`).

Nothing here knows Engine.IO: a refusal is an exception carrying the HTTP
status and headers, and the caller writes the body.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Callable, Optional
from urllib.parse import urlsplit

from twisted.internet.interfaces import IProtocol
from twisted.web.server import Request

from jsongle.engineio.firstrequest import take_over

#: The only version of RFC 6455 spoken (drafts such as 8 are refused).
WEBSOCKET_VERSION = b"13"
#: RFC 6455, 1.3: appended to the client's key before hashing.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DIGITS = b"0123456789"


class HandshakeRefused(Exception):
    """Why a request cannot become a WebSocket, and the HTTP answer that says so."""

    def __init__(self, reason: str, status: int = 400, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: Header fields the refusal must carry (RFC 6455, 4.2.2: the version we speak).
        self.headers = headers


_WRONG_VERSION = ((b"sec-websocket-version", WEBSOCKET_VERSION),)


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value proving we read ``Sec-WebSocket-Key`` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def check_opening_handshake(request: Request) -> bytes:
    """:func:`check_handshake` for a request Twisted Web parsed."""
    return check_handshake(request.method, request.clientproto, request.uri, request.requestHeaders.getRawHeaders)


def check_handshake(
    method: bytes, version: bytes, uri: bytes, field: Callable[[bytes], Optional[list[bytes]]]
) -> bytes:
    """Check that a request is a valid WebSocket opening handshake.

    ``field`` gives the values of a header field by its lower-case name, or
    None. Returns the ``Sec-WebSocket-Accept`` value for the answer; raises
    :class:`HandshakeRefused` otherwise. Header fields are counted by line:
    those that must appear once may not appear twice.
    """
    if method != b"GET":
        raise HandshakeRefused("the opening handshake must be a GET", 405, ((b"allow", b"GET"),))
    if version != b"HTTP/1.1":
        raise HandshakeRefused("the opening handshake needs HTTP/1.1")
    if b"#" in uri:
        raise HandshakeRefused("a WebSocket URI has no fragment")
    host = _single(field(b"host"))
    if host is None or not _host_valid(host):
        raise HandshakeRefused("exactly one valid Host header is required")
    if not _has_token(field(b"upgrade"), b"websocket"):
        raise HandshakeRefused("Upgrade must name websocket")
    if not _has_token(field(b"connection"), b"upgrade"):
        raise HandshakeRefused("Connection must name upgrade")
    if _single(field(b"sec-websocket-version")) != WEBSOCKET_VERSION:
        raise HandshakeRefused("only WebSocket version 13 is spoken", 400, _WRONG_VERSION)
    key = _single(field(b"sec-websocket-key"))
    if key is None or not _key_valid(key):
        raise HandshakeRefused("exactly one Sec-WebSocket-Key, base64 of 16 bytes, is required")
    origins = field(b"origin")
    if origins is not None and (len(origins) != 1 or not _origin_valid(origins[0])):
        raise HandshakeRefused("at most one valid Origin header is allowed")
    protocols = field(b"sec-websocket-protocol")
    if protocols is not None and _has_duplicates(protocols):
        raise HandshakeRefused("a subprotocol is offered twice")
    return accept_key(key)


def hand_over(request: Request, protocol: IProtocol) -> None:
    """Connect ``protocol`` to the connection ``request`` came on, in place of HTTP.

    Twisted Web has no public way to do this. The HTTP channel is let go of
    entirely: it loses the connection, its idle timer and its place as the
    connection's producer, any of which would otherwise keep it, its request
    and headers alive as long as the WebSocket.
    """
    channel = request.channel
    connection, channel.transport = channel.transport, None
    # Stopped while a request is handled; it must never restart.
    channel.setTimeout(None)
    # The channel registered itself as the producer when the connection was made.
    connection.unregisterProducer()
    take_over(connection, protocol)
    # The channel pauses reading while it holds a request it has not finished;
    # from now on the WebSocket reads.
    connection.resumeProducing()


def _single(values: Optional[list[bytes]]) -> Optional[bytes]:
    """The value of a header field that must appear exactly once, else None."""
    if values is None or len(values) != 1:
        return None
    return values[0]


def _has_token(values: Optional[list[bytes]], token: bytes) -> bool:
    """Whether a comma-separated header field lists ``token`` (case-insensitive)."""
    if values is None:
        return False
    for value in values:
        for item in value.split(b","):
            if item.strip().lower() == token:
                return True
    return False


def _has_duplicates(values: list[bytes]) -> bool:
    items = [item.strip() for value in values for item in value.split(b",")]
    return len(set(items)) != len(items)


def _key_valid(key: bytes) -> bool:
    """16 bytes in base64: 22 characters of the alphabet, then ``==``."""
    return len(key) == 24 and key[22:] == b"==" and not key[:22].translate(None, _BASE64_ALPHABET)


def _host_valid(host: bytes) -> bool:
    """A port after the host, if any, is a number (``[::1]`` has colons of its own)."""
    if b":" not in host or host.endswith(b"]"):
        return True
    port = host.rpartition(b":")[2]
    return bool(port) and not port.translate(None, _DIGITS)


def _origin_valid(origin: bytes) -> bool:
    """A URL with a host (and a valid port, if any), or an opaque origin.

    Pages from ``file:`` and sandboxed frames send ``null`` (or a ``file:``
    URL); the Node.js server and the polling transport let them through
    unless ``corsPolicyOrigin`` lists origins, so the WebSocket does too:
    whether an origin is allowed is the CORS policy's call, not this check's.
    """
    try:
        text = origin.decode("latin-1")
        parts = urlsplit(text)
        if text.lower() == "null" or parts.scheme.lower() == "file":
            return True
        # ``port`` raises ValueError for one that is not a port number.
        return bool(parts.hostname) and (parts.port is None or parts.port >= 0)
    except ValueError:
        return False