"""Engine.IO v4 packets and the HTTP long-polling payload: a pure codec.

Nothing here does I/O or knows about Socket.IO; every decoder either returns
a value or raises :class:`PacketError`, the one error the transports turn into
a clean answer (an HTTP 400 or closing that client).
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple, Sequence, Union

OPEN = "0"
CLOSE = "1"
PING = "2"
PONG = "3"
MESSAGE = "4"
UPGRADE = "5"
NOOP = "6"

TYPES = frozenset((OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP))

#: Packets of the polling payload are separated by this record separator.
SEPARATOR = "\x1e"

#: A binary message travels in a polling payload as ``b`` + base64.
BINARY_PREFIX = "b"

Data = Union[str, bytes]


class PacketError(ValueError):
    """Input that is not an Engine.IO v4 packet or payload."""


class Packet(NamedTuple):
    """One Engine.IO packet: a type character and its data.

    ``data`` is ``bytes`` only for a binary MESSAGE.
    """

    type: str
    data: Data = ""


def encode(packet: Packet) -> Data:
    """Encode a packet for a WebSocket frame: text, or raw bytes for binary."""
    if isinstance(packet.data, bytes):
        return packet.data
    return packet.type + packet.data


def decode(frame: Data) -> Packet:
    """Decode one WebSocket frame (text or binary) into a packet."""
    if isinstance(frame, bytes):
        return Packet(MESSAGE, frame)
    if not frame or frame[0] not in TYPES:
        raise PacketError("unknown packet type")
    return Packet(frame[0], frame[1:])


def encode_payload(packets: Sequence[Packet]) -> str:
    """Join packets into a polling response body."""
    parts = []
    for packet in packets:
        if isinstance(packet.data, bytes):
            parts.append(BINARY_PREFIX + base64.b64encode(packet.data).decode("ascii"))
        else:
            parts.append(packet.type + packet.data)
    return SEPARATOR.join(parts)


def decode_payload(body: str) -> list[Packet]:
    """Split a polling request body into packets."""
    if not body:
        raise PacketError("empty payload")
    packets = []
    for part in body.split(SEPARATOR):
        if part[:1] == BINARY_PREFIX:
            try:
                data = base64.b64decode(part[1:].encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise PacketError("bad base64 binary packet") from exc
            packets.append(Packet(MESSAGE, data))
        else:
            packets.append(decode(part))
    return packets
