"""Building the JSONgle envelopes the server sends.

:class:`Messages` stamps each with a fresh id, the server's id as ``from``
and dates from the injected clock; the service builds one and every part
that answers clients uses it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from twisted.internet.interfaces import IReactorTime

from jsongle.randompool import RandomPool

IQ_GET = "iq-get"
IQ_SET = "iq-set"
IQ_RESULT = "iq-result"
IQ_ERROR = "iq-error"
ACK = "ack"
SESSION_ERROR = "session-error"
SESSION_EVENT = "session-event"
SESSION_INFO = "session-info"

ROOM = "room"
MUC = "muc"

JOINED = "joined"
LEFT = "left"


#: The RFC 4122 variant bits (10xx) applied to the first hex digit of the 4th group.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class RandomIds:
    """Version 4 UUIDs as text, from pooled random bytes, without a UUID object.

    Every answer the server builds carries a fresh id.
    """

    __slots__ = ("_random",)

    def __init__(self, random: RandomPool) -> None:
        self._random = random

    def new(self) -> str:
        h = self._random.take(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: What a missing field is in an error text: JavaScript's ``undefined``.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


def js_string(value: Any) -> str:
    """``value`` as JavaScript's ``String()`` writes it in a template literal,
    so error texts read as the Node.js server's (``undefined`` for
    :data:`MISSING`, ``null``, ``true``, ``[object Object]``, ``1`` for ``1.0``)."""
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def reply_address(message: Any, connection_id: str) -> str:
    """The ``to`` of answers: the sender's ``from`` when it is a string (echoed,
    never used for routing), else its connection id."""
    if message.__class__ is dict:
        sender = message.get("from")
        if sender.__class__ is str:
            return sender
    return connection_id


def _present(jsongle: Mapping[str, Any]) -> dict[str, Any]:
    """Absent values are left out, as JSON.stringify does in Node."""
    return {k: v for k, v in jsongle.items() if v is not None}


class Messages:
    """What the server says: envelopes with a fresh id, ``from`` the server id."""

    __slots__ = ("server_id", "_new_id", "date", "_clock")

    def __init__(self, server_id: str, ids: RandomIds, date: Callable[[float], str], clock: IReactorTime) -> None:
        self.server_id = server_id
        self._new_id = ids.new
        #: ``date(seconds)``: the ISO-8601 text of a time.
        self.date = date
        self._clock = clock

    def new_id(self) -> str:
        return self._new_id()

    def now(self) -> str:
        """The current date as ISO-8601 UTC with milliseconds."""
        return self.date(self._clock.seconds())

    def envelope(self, to: Optional[str], jsongle: Mapping[str, Any]) -> dict[str, Any]:
        message = {"id": self._new_id(), "from": self.server_id, "to": to, "jsongle": _present(jsongle)}
        if to is None:
            del message["to"]
        return message

    def iq(self, to: Optional[str], action: str, transaction: Any, query: Any, description: Any) -> dict[str, Any]:
        return self.envelope(to, {"action": action, "query": query, "transaction": transaction, "description": description})

    def ack(self, to: Optional[str], status: str, transaction: Any) -> dict[str, Any]:
        return self.envelope(to, {"action": ACK, "status": status, "transaction": transaction})

    def session_error(self, to: Optional[str], code: int, details: str) -> dict[str, Any]:
        return self.envelope(to, {"action": SESSION_ERROR, "description": {"errorCode": code, "errorDetails": details}})

    def event(self, to: Optional[str], namespace: Any, name: str, description: Any) -> dict[str, Any]:
        return self.envelope(to, {"action": SESSION_EVENT, "namespace": namespace, "event": name, "description": description})

    def session_info(self, to: Optional[str], call: Mapping[str, Any], reason: str, description: dict[str, Any]) -> dict[str, Any]:
        return self.envelope(
            to,
            {
                "sid": call.get("sid"),
                "action": SESSION_INFO,
                "reason": reason,
                "initiator": call.get("initiator"),
                "responder": call.get("responder"),
                "description": description,
            },
        )

    def room_event(self, to: str, kind: str, name: str, rid: str, identity: dict[str, Any]) -> dict[str, Any]:
        """``joined`` or ``left``: ``identity`` came into or left room ``rid``."""
        return self.event(to, kind, name, {"member": identity, "rid": rid})
