"""Building JSONgle envelopes the server sends."""

from __future__ import annotations

from typing import Any, Optional

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


#: The RFC 4122 variant bits (10xx) applied to the first hex digit of the 4th group.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class RandomIds:
    """Version 4 UUIDs as text, from pooled random bytes, without a UUID object.

    Every answer the server builds carries a fresh id.
    """

    __slots__ = ("_random",)

    def __init__(self) -> None:
        self._random = RandomPool()

    def new(self) -> str:
        h = self._random.take(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


new_id = RandomIds().new


def envelope(sender: str, to: Optional[str], jsongle: dict[str, Any]) -> dict[str, Any]:
    """A message; absent values are left out, as JSON.stringify does in Node."""
    message = {"id": new_id(), "from": sender, "to": to, "jsongle": {k: v for k, v in jsongle.items() if v is not None}}
    if to is None:
        del message["to"]
    return message


def iq(sender: str, to: Optional[str], action: str, transaction: Any, query: Any, description: Any) -> dict[str, Any]:
    return envelope(
        sender,
        to,
        {"action": action, "query": query, "transaction": transaction, "description": description},
    )


def ack(sender: str, to: Optional[str], status: str, transaction: Any) -> dict[str, Any]:
    return envelope(sender, to, {"action": ACK, "status": status, "transaction": transaction})


def session_error(sender: str, to: Optional[str], code: int, details: str) -> dict[str, Any]:
    return envelope(
        sender, to, {"action": SESSION_ERROR, "description": {"errorCode": code, "errorDetails": details}}
    )


def event(sender: str, to: Optional[str], namespace: Any, name: str, description: Any) -> dict[str, Any]:
    return envelope(
        sender,
        to,
        {"action": SESSION_EVENT, "namespace": namespace, "event": name, "description": description},
    )


def session_info(
    sender: str, to: Optional[str], call: dict[str, Any], reason: str, description: dict[str, Any]
) -> dict[str, Any]:
    return envelope(
        sender,
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
