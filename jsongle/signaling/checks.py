"""The checks every received message goes through, in the documented order.

1. a JSONgle message at all (400002), its ids well formed (400001);
2. the sender registered by its hello (403002);
3. the sender a member of the target room (404002); ``to`` may also name one
   member of a room, ``<rid>/<uid>`` (PROTOCOL §13);
4. in a P2P room, someone to talk to; for ``<rid>/<uid>``, that member in
   the room (``unreachable`` or 404003);
5. a supported action (405001, in :mod:`jsongle.signaling.dispatch`).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger

from jsongle.signaling import errors
from jsongle.signaling.dispatch import Dispatcher
from jsongle.signaling.fields import FieldLimits, message_problem
from jsongle.signaling.member import Member
from jsongle.signaling.messages import IQ_GET, IQ_RESULT, IQ_SET, MISSING, ROOM, js_string, reply_address
from jsongle.signaling.request import Context, HandlerRequest
from jsongle.signaling.rooms import Room

NOT_REGISTERED_DETAILS = "session-hello message was not received or was not complete"


def is_member(connection_id: str, room: Room) -> bool:
    for member in room.members:
        if member.connection_id == connection_id:
            return True
    return False


class MessageChecks:
    """Runs the checks on a message, then hands it to the dispatcher."""

    log = Logger()

    __slots__ = ("_context", "_dispatcher", "_limits")

    def __init__(self, context: Context, dispatcher: Dispatcher) -> None:
        self._context = context
        self._dispatcher = dispatcher
        config = context.config
        self._limits = FieldLimits(config.max_id_length, config.max_display_name_length)

    def _failed(self, member: Member, message: Any) -> None:
        """An unexpected failure: logged, and the sender is answered 500001."""
        self.log.failure("handling a message from {sid} failed", sid=member.connection_id)
        self._error(member, reply_address(message, member.connection_id), errors.INTERNAL_ERROR, "internal error")

    def _error(self, member: Member, reply_to: str, code: int, details: str) -> None:
        context = self._context
        context.delivery.local.send_on(member.connection, context.messages.session_error(reply_to, code, details))

    def receive(self, member: Member, message: Any) -> None:
        """Check and dispatch one message; an unexpected failure is answered 500001."""
        try:
            context = self._context
            received_at = context.clock.seconds()
            reply_to = member.connection_id
            # 1. a JSONgle message at all?
            if message.__class__ is not dict:
                self._error(member, reply_to, errors.NO_JSONGLE_DATA, "Missing property 'jsongle' in message")
                return
            sender = message.get("from")
            if sender.__class__ is str:
                reply_to = sender  # echoed, never used for routing (reply_address)
            if message.get("jsongle").__class__ is not dict:
                self._error(member, reply_to, errors.NO_JSONGLE_DATA, "Missing property 'jsongle' in message")
                return
            # 1b. ids of the right type and length (never trusted further down)?
            problem = message_problem(message, self._limits)
            if problem is not None:
                self._error(member, reply_to, errors.BAD_PARAMETERS, problem)
                return
            jsongle = message["jsongle"]
            action = jsongle.get("action")
            is_hello = action == IQ_RESULT and jsongle.get("query") == "session-hello"
            # 2. registered (hello done)? (Member.registered, without a property call)
            if member.uid is None and not is_hello:
                self._error(member, reply_to, errors.NOT_REGISTERED, NOT_REGISTERED_DETAILS)
                return
            to = message.get("to")
            room: Optional[Room] = None
            addressee: Optional[str] = None
            if to != context.messages.server_id and not is_hello:
                room = context.rooms.room(to) if to.__class__ is str else None
                # 3. a member of the target room?
                if room is None or not is_member(member.connection_id, room):
                    found = self._member_address(member.connection_id, to) if to.__class__ is str else None
                    if found is None:
                        shown = js_string(message.get("to", MISSING))
                        self._error(member, reply_to, errors.NOT_A_MEMBER, f"Can't call - not in room {shown}")
                        return
                    room, addressee = found
                    # 4. that member in the room?
                    if not any(m.uid == addressee and m.connection_id != member.connection_id for m in room.members):
                        self._alone(member, reply_to, jsongle, f"{addressee} is not in room {room.rid}")
                        return
                # 4. anybody to talk to (P2P rooms)?
                elif room.kind == ROOM and len(room.members) < 2:
                    self._alone(member, reply_to, jsongle, f"no other member in room {to}")
                    return
            request = HandlerRequest(context, message, member, room, reply_to, received_at, addressee)
            if action == IQ_SET or action == IQ_RESULT:
                self._dispatcher.query(request, action)
                return
            if action == IQ_GET and self._dispatcher.handlers.query(IQ_GET, jsongle.get("query")) is not None:
                # A client's iq-get (ice-servers) where a query handler takes it;
                # any other stays an unsupported action (405001), as before.
                self._dispatcher.query(request, action)
                return
            # 5. a supported action?
            dispatcher = self._dispatcher
            handler = dispatcher.handlers.action(action)
            if handler is None:
                dispatcher.unsupported(request)
            else:
                dispatcher.run(handler, request)
        except Exception:
            self._failed(member, message)

    def _member_address(self, connection_id: str, to: str) -> Optional[tuple[Room, str]]:
        """``<rid>/<uid>``: the room of the sender's named by the longest part of
        ``to`` before a ``/`` (ids may hold ``/``), and the uid after it."""
        rooms = self._context.rooms
        end = len(to)
        while True:
            end = to.rfind("/", 0, end)
            if end <= 0:
                return None
            room = rooms.room(to[:end])
            if room is not None and is_member(connection_id, room) and end + 1 < len(to):
                return room, to[end + 1:]

    def _alone(self, member: Member, reply_to: str, jsongle: dict[str, Any], why: str) -> None:
        """Check 4 failed: call actions hear ``unreachable``, the others 404003."""
        messages = self._context.messages
        handler = self._dispatcher.handlers.action(jsongle.get("action"))
        if handler is not None and handler.call:
            answer = messages.session_info(reply_to, jsongle, "unreachable", {"ended": messages.now()})
            self._context.delivery.local.send_on(member.connection, answer)
        else:
            self._error(member, reply_to, errors.NO_OTHER_MEMBER, f"Can't transmit message - {why}")
