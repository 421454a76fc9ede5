"""The built-in JSONgle handlers (registered by ``twisted/plugins/jsongle_handlers.py``)."""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import implementer

from jsongle.deferreds import PENDING, result_now
from jsongle.interfaces import IActionHandler, IQueryHandler
from jsongle.jsontext import dumps_bytes
from jsongle.signaling import errors
from jsongle.signaling import messages as m
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.greeting import HELLO
from jsongle.signaling.fields import invalid, string_problem
from jsongle.signaling.rooms import JoinResult, LeaveResult


def _room_id(request: Any) -> str:
    description = request.jsongle.get("description")
    rid = description.get("rid") if isinstance(description, dict) else None
    if not isinstance(rid, str) or not rid:
        raise JsongleError(errors.BAD_PARAMETERS, "Missing 'rid' parameter")
    problem = string_problem(rid, request.config.max_id_length)
    if problem is not None:
        raise JsongleError(errors.BAD_PARAMETERS, invalid("rid", problem))
    return rid


def _identity_problem(description: Any, config: Any) -> Optional[str]:
    """errorDetails for a bad hello description (``uid`` required, ``dn``
    optional, the whole object at most ``maxMemberDataBytes``), or None."""
    uid = description.get("uid") if isinstance(description, dict) else None
    if not isinstance(uid, str) or not uid:
        return "Missing 'uid' parameter"
    problem = string_problem(uid, config.max_id_length)
    if problem is not None:
        return invalid("uid", problem)
    if "dn" in description:
        problem = string_problem(description["dn"], config.max_display_name_length)
        if problem is not None:
            return invalid("dn", problem)
    size = len(dumps_bytes(description))
    if size > config.max_member_data_bytes:
        return invalid("description", f"is larger than {config.max_member_data_bytes} bytes ({size})")
    return None


@implementer(IPlugin, IQueryHandler)
class HelloHandler:
    """The client's answer to the server's session-hello: its identity."""

    query = HELLO
    action = m.IQ_RESULT

    def handle(self, request: Any) -> None:
        description = request.jsongle.get("description")
        transaction = request.jsongle.get("transaction")
        problem = _identity_problem(description, request.config)
        if problem is not None:
            request.reply(request.messages.ack(request.reply_to, "failed", transaction))
            request.error(errors.BAD_PARAMETERS, problem)
            return
        member = request.member
        claims = member.claims
        if claims is not None and description["uid"] != claims.sub:
            request.reply(request.messages.ack(request.reply_to, "failed", transaction))
            request.error(errors.UID_MISMATCH, "uid does not match the token")
            return
        if not member.registered:
            # Others see the description as the client sent it (an avatar, a
            # profile...), as the Node.js server shows socket.data.
            identity = dict(description)
            if claims is not None and claims.name is not None:
                identity["dn"] = claims.name  # the token's name wins over what the client says
            member.register(description["uid"], identity)
        request.reply(request.messages.ack(request.reply_to, "success", transaction))


@implementer(IPlugin, IQueryHandler)
class JoinHandler:
    """session-join: a P2P room (namespace 'room')."""

    query = "session-join"
    action = m.IQ_SET
    kind = m.ROOM

    def handle(self, request: Any) -> Union[Deferred, dict[str, Any]]:
        rid = _room_id(request)
        claims = request.member.claims
        if claims is not None and not claims.may_join(rid):
            raise JsongleError(errors.ROOM_NOT_ALLOWED, f"Not allowed in room {rid}")
        joined = request.rooms.join(rid, self.kind, request.member.ref)
        result = result_now(joined)
        if result is PENDING:
            return joined.addCallback(self._joined, request, rid)
        return self._joined(result, request, rid)

    def _joined(self, result: JoinResult, request: Any, rid: str) -> dict[str, Any]:
        if not result.already:
            if result.created:
                request.metrics.conferences.inc()
            request.announce_join(rid, self.kind, request.member.ref, result.others)
        return {"members": [other.identity for other in result.others], "rid": rid}


@implementer(IPlugin, IQueryHandler)
class MucJoinHandler(JoinHandler):
    """muc-join: a multi-user room (namespace 'muc')."""

    query = "muc-join"
    kind = m.MUC


@implementer(IPlugin, IQueryHandler)
class LeaveHandler:
    """session-leave: leave a room of either kind."""

    query = "session-leave"
    action = m.IQ_SET

    def handle(self, request: Any) -> Union[Deferred, dict[str, Any]]:
        rid = _room_id(request)
        left = request.rooms.leave(rid, request.member.connection_id)
        result = result_now(left)
        if result is PENDING:
            return left.addCallback(self._left, request)
        return self._left(result, request)

    def _left(self, result: LeaveResult, request: Any) -> dict[str, Any]:
        request.announce_leave(result)
        return {"rid": result.rid}


def stamped(request: Any) -> dict[str, Any]:
    """A copy of the message with description.sent (if absent) and .relayed."""
    jsongle = dict(request.jsongle)
    description = jsongle.get("description")
    if description is None:
        description = {}
    elif not isinstance(description, dict):
        raise JsongleError(errors.BAD_PARAMETERS, "'description' must be an object")
    else:
        description = dict(description)
    now = request.now()
    description.setdefault("sent", now)
    description["relayed"] = now
    jsongle["description"] = description
    message = dict(request.message)
    message["jsongle"] = jsongle
    return message


@implementer(IPlugin, IActionHandler)
class RelayHandler:
    """Relays a call or event message with its sent/relayed dates."""

    call = True

    def __init__(self, action: str, call: bool = True) -> None:
        self.action = action
        self.call = call

    def handle(self, request: Any) -> None:
        request.relay(stamped(request))


@implementer(IPlugin, IActionHandler)
class ProposeHandler:
    """session-propose: relayed as is; the caller hears 'trying'."""

    action = "session-propose"
    call = True

    def handle(self, request: Any) -> None:
        message = request.message
        if not isinstance(request.jsongle.get("description"), dict):
            if request.jsongle.get("description") is not None:
                raise JsongleError(errors.BAD_PARAMETERS, "'description' must be an object")
            message = dict(message)
            message["jsongle"] = dict(request.jsongle, description={})
        request.relay(message)
        request.reply(request.messages.session_info(request.reply_to, request.jsongle, "trying", {"tried": request.now()}))


@implementer(IPlugin, IActionHandler)
class AcceptHandler(RelayHandler):
    """session-accept: relayed, and counted as a P2P call."""

    def __init__(self) -> None:
        super().__init__("session-accept")

    def handle(self, request: Any) -> None:
        request.metrics.p2p.inc()
        super().handle(request)
        room = request.room
        if room is not None:
            member = request.member
            addressee = request.addressee
            parties = [
                m for m in room.members
                if m.connection_id != member.connection_id and (addressee is None or m.uid == addressee)
            ]
            request.calls.accepted(room.rid, room.kind, request.jsongle.get("sid"), [member.ref, *parties])


@implementer(IPlugin, IActionHandler)
class TerminateHandler(RelayHandler):
    """session-terminate: relayed; the call ends."""

    def __init__(self) -> None:
        super().__init__("session-terminate")

    def handle(self, request: Any) -> None:
        super().handle(request)
        if request.room is not None:
            request.calls.terminated(request.room.rid, request.jsongle.get("sid"))


@implementer(IPlugin, IActionHandler)
class EventHandler(RelayHandler):
    """session-event: relayed; MUC reactions are counted."""

    def __init__(self) -> None:
        super().__init__("session-event", call=False)

    def handle(self, request: Any) -> None:
        super().handle(request)
        if request.jsongle.get("event") == "reaction" and request.jsongle.get("namespace") == m.MUC:
            request.metrics.reactions.inc()


@implementer(IPlugin, IActionHandler)
class AcknowledgedRelayHandler(RelayHandler):
    """session-text / session-custom: relayed, and the server acknowledges."""

    def __init__(self, action: str) -> None:
        super().__init__(action, call=False)

    def handle(self, request: Any) -> None:
        super().handle(request)
        namespace = request.jsongle.get("namespace")
        description = {"acknowledged": request.now(), "mid": request.message.get("id"), "type": "server-received"}
        if description["mid"] is None:  # absent, not null (JSON.stringify drops undefined)
            del description["mid"]
        request.reply(request.messages.event(request.reply_to, namespace, "ack", description))
        if self.action == "session-text" and namespace == m.MUC:
            request.metrics.messages.inc()


@implementer(IPlugin, IActionHandler)
class MetricsHandler:
    """session-metrics: counted, never relayed."""

    action = "session-metrics"
    call = False

    def handle(self, request: Any) -> None:
        description = request.jsongle.get("description")
        if not isinstance(description, dict):
            return
        if description.get("error") == "ice-failed":
            request.metrics.p2p_failed.inc()
        duration = description.get("duration")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0:
            request.metrics.p2p_duration.inc(duration)


def builtin_queries() -> list[Any]:
    return [HelloHandler(), JoinHandler(), MucJoinHandler(), LeaveHandler()]


def builtin_actions() -> list[Any]:
    stamped_calls = [
        "session-info",
        "session-proceed",
        "session-initiate",
        "transport-info",
        "session-decline",
        "session-retract",
    ]
    return [
        ProposeHandler(),
        AcceptHandler(),
        TerminateHandler(),
        EventHandler(),
        AcknowledgedRelayHandler("session-text"),
        AcknowledgedRelayHandler("session-custom"),
        MetricsHandler(),
        *(RelayHandler(action) for action in stamped_calls),
    ]
