"""Building JSONgle envelopes the server sends."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Optional

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


def new_id() -> str:
    return str(uuid.uuid4())


def iso_date(seconds: float) -> str:
    """``2026-11-24T10:00:00.000Z``: what JavaScript's Date.toJSON() gives."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


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
