"""Socket.IO v5 packets: a pure codec, including binary attachments.

Encoding: ``<type>[<attachments>-][<namespace>,][<ack id>][<json>]``.  Binary
events carry ``{"_placeholder": true, "num": n}`` in their JSON and the bytes
follow as separate Engine.IO messages.  Decoders return a value or raise
:class:`PacketError`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple, Optional, Union

import orjson

from jsongle.jsontext import dumps, dumps_bytes, loads

CONNECT = 0
DISCONNECT = 1
EVENT = 2
ACK = 3
CONNECT_ERROR = 4
BINARY_EVENT = 5
BINARY_ACK = 6

MAX_ATTACHMENTS = 10
_DIGITS = frozenset("0123456789")

class PacketError(ValueError):
    """Input that is not a Socket.IO v5 packet."""


class Packet(NamedTuple):
    type: int
    namespace: str = "/"
    data: Any = None
    id: Optional[int] = None
    attachments: int = 0


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, list):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def _has_binary(data: Any) -> bool:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    if isinstance(data, list):
        return any(_has_binary(item) for item in data)
    if isinstance(data, dict):
        return any(_has_binary(value) for value in data.values())
    return False


def _head(kind: int, namespace: str, ack_id: Optional[int]) -> str:
    head = str(kind)
    if namespace != "/":
        head += namespace + ","
    if ack_id is not None:
        head += str(ack_id)
    return head


def encode_plain(kind: int, namespace: str, data: Any, ack_id: Optional[int] = None) -> bytes:
    """An EVENT or ACK whose data is plain JSON, as the UTF-8 of its one message.

    Raises ``TypeError`` when ``data`` holds bytes: those need :func:`encode`.
    """
    body = dumps_bytes(data)
    if namespace == "/" and ack_id is None:
        return _KIND_BYTES[kind] + body
    return _head(kind, namespace, ack_id).encode("utf-8") + body


_KIND_BYTES = {kind: str(kind).encode("ascii") for kind in (EVENT, ACK)}


def encode(packet: Packet) -> list[Union[str, bytes]]:
    """Encode a packet into Engine.IO messages: one text, then any binaries."""
    kind = packet.type
    data = packet.data
    if (kind == EVENT or kind == ACK) and data is not None:
        # Plain JSON is the rule: encode it directly; the JSON encoder refuses
        # bytes, and only then is the data walked for binary attachments.
        try:
            body = dumps(data)
        except TypeError:
            pass
        else:
            return [_head(kind, packet.namespace, packet.id) + body]
    buffers: list[bytes] = []
    if kind in (EVENT, ACK) and _has_binary(data):
        kind = BINARY_EVENT if kind == EVENT else BINARY_ACK
        data = _deconstruct(data, buffers)
    head = str(kind)
    if buffers:
        head += "%d-" % len(buffers)
    if packet.namespace != "/":
        head += packet.namespace + ","
    if packet.id is not None:
        head += str(packet.id)
    if data is not None:
        head += dumps(data)
    return [head, *buffers]


def encode_json_event(event: str, json_arg: bytes, namespace: str = "/") -> bytes:
    """An EVENT with one argument given as UTF-8 JSON, encoded once by the caller.

    Lets an application send one encoded body to many clients; the result is
    the Engine.IO message as UTF-8, ready for the wire. (With a connection
    state recovery offset: :meth:`~jsongle.socketio.recovery.PacketLog.keep_event`.)
    """
    # One allocation: a body may be kilobytes.
    return b"".join((_event_head(event, namespace), json_arg, b"]"))


def event_head(event: str, namespace: str = "/") -> bytes:
    """The start of an EVENT :func:`encode_json_event` writes, up to its
    JSON argument: what a message kept elsewhere is completed from."""
    return _event_head(event, namespace)


@lru_cache(maxsize=64)
def _event_head(event: str, namespace: str) -> bytes:
    return (_head(EVENT, namespace, None) + "[" + dumps(event) + ",").encode("utf-8")


def encode_event(args: list[Any], namespace: str = "/", ack_id: Optional[int] = None) -> list[Union[str, bytes]]:
    """Shorthand for an EVENT whose first argument is the event name."""
    return encode(Packet(EVENT, namespace, args, ack_id))


def is_plain_event(text: str) -> bool:
    """True for the common case: an EVENT on "/" without an ack id or attachments."""
    return text[:2] == "2["


def plain_event_args(text: str) -> list[Any]:
    """The arguments (event name first) of a :func:`is_plain_event` packet."""
    body = text[1:]
    try:
        try:
            data = orjson.loads(body)  # what jsontext.loads does, without a call
        except orjson.JSONDecodeError:
            data = loads(body)
    except (ValueError, RecursionError) as exc:
        raise PacketError("bad JSON") from exc
    # _check(EVENT, data, None), inline
    if data.__class__ is not list or not data or data[0].__class__ is not str:
        _check(EVENT, data, None)
    return data


def decode(text: str) -> Packet:
    """Decode the text part of a packet; binary parts come via :class:`Reassembler`."""
    if is_plain_event(text):
        return Packet(EVENT, "/", plain_event_args(text))
    if not text or text[0] not in "0123456":
        raise PacketError("unknown packet type")
    kind = int(text[0])
    i = 1
    n = len(text)
    attachments = 0
    if kind in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", i)
        digits = text[i:dash] if dash > 0 else ""
        if not digits or not _DIGITS.issuperset(digits) or len(digits) > 3:
            raise PacketError("bad attachment count")
        attachments = int(digits)
        if attachments > MAX_ATTACHMENTS:
            raise PacketError("too many attachments")
        i = dash + 1
    namespace = "/"
    if i < n and text[i] == "/":
        comma = text.find(",", i)
        end = comma if comma >= 0 else n
        namespace = text[i:end]
        i = end + 1 if comma >= 0 else n
    start = i
    while i < n and text[i] in _DIGITS:
        i += 1
    ack_id = None
    if i > start:
        if i - start > 15:
            raise PacketError("ack id too long")
        ack_id = int(text[start:i])
    data = None
    if i < n:
        try:
            data = loads(text[i:])
        except (ValueError, RecursionError) as exc:
            raise PacketError("bad JSON") from exc
    _check(kind, data, ack_id)
    return Packet(kind, namespace, data, ack_id, attachments)


def _check(kind: int, data: Any, ack_id: Optional[int]) -> None:
    if kind == CONNECT:
        if data is not None and not isinstance(data, dict):
            raise PacketError("CONNECT payload must be an object")
    elif kind == DISCONNECT:
        if data is not None:
            raise PacketError("DISCONNECT takes no payload")
    elif kind in (EVENT, BINARY_EVENT):
        if not isinstance(data, list) or not data or not isinstance(data[0], (str, int)) or isinstance(data[0], bool):
            raise PacketError("EVENT payload must be a non-empty array")
    elif kind in (ACK, BINARY_ACK):
        if not isinstance(data, list) or ack_id is None:
            raise PacketError("ACK needs an id and an array")
    elif kind == CONNECT_ERROR:
        pass  # only the server sends it


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and len(data) == 2:
            num = data.get("num")
            if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < len(buffers):
                raise PacketError("bad placeholder")
            return buffers[num]
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    return data


class Reassembler:
    """Collects the binary attachments that follow a binary packet."""

    __slots__ = ("_packet", "_buffers")

    def __init__(self) -> None:
        self._packet: Optional[Packet] = None
        self._buffers: list[bytes] = []

    @property
    def idle(self) -> bool:
        """No binary packet is waiting for its attachments."""
        return self._packet is None

    def feed(self, message: Union[str, bytes]) -> Optional[Packet]:
        """Feed one Engine.IO message; return a complete packet or None."""
        if self._packet is None:
            if isinstance(message, bytes):
                raise PacketError("unexpected binary attachment")
            packet = decode(message)
            if packet.attachments == 0:
                if packet.type in (BINARY_EVENT, BINARY_ACK):
                    return packet._replace(type=packet.type - 3)
                return packet
            self._packet = packet
            self._buffers = []
            return None
        if not isinstance(message, bytes):
            raise PacketError("expected a binary attachment")
        self._buffers.append(message)
        packet = self._packet
        if len(self._buffers) < packet.attachments:
            return None
        buffers, self._buffers, self._packet = self._buffers, [], None
        try:
            data = _reconstruct(packet.data, buffers)
        except RecursionError as exc:  # JSON nested deeper than Python recurses
            raise PacketError("binary packet nested too deeply") from exc
        return packet._replace(data=data)
