"""What a handler gets for one message: :class:`HandlerRequest`, and the
shared parts it reaches through (:class:`Context`)."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from jsongle.config import Config
from jsongle.interfaces import IHandlerRequest, IRoomRegistry
from jsongle.metrics import Metrics
from jsongle.signaling.announcer import Announcer
from jsongle.signaling.calls import Calls
from jsongle.signaling.delivery import Delivery
from jsongle.signaling.member import Member
from jsongle.signaling.messages import Messages
from jsongle.signaling.rooms import LeaveResult, Room, RoomMember


class Context:
    """The parts of the application that every message may need, built once."""

    __slots__ = ("config", "clock", "metrics", "rooms", "messages", "delivery", "announcer", "calls", "date")

    def __init__(
        self, config: Config, clock: IReactorTime, metrics: Metrics, rooms: IRoomRegistry,
        messages: Messages, delivery: Delivery, announcer: Announcer, calls: Calls,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.rooms = rooms
        self.messages = messages
        self.delivery = delivery
        self.announcer = announcer
        self.calls = calls
        #: seconds -> date text (every relay is stamped: one call, not three).
        self.date = messages.date


@implementer(IHandlerRequest)
class HandlerRequest:
    """One received message, with what its handler may use (IHandlerRequest, and only that)."""

    __slots__ = ("_context", "_received_at", "message", "jsongle", "member", "room", "reply_to", "addressee")

    def __init__(
        self, context: Context, message: dict[str, Any], member: Member, room: Optional[Room], reply_to: str,
        received_at: float, addressee: Optional[str] = None,
    ) -> None:
        self._context = context
        #: clock.seconds() when the message arrived (relay latency).
        self._received_at = received_at
        self.message = message
        self.jsongle: dict[str, Any] = message["jsongle"]
        self.member = member
        self.room = room
        self.reply_to = reply_to
        #: The uid of ``to`` = ``<rid>/<uid>``, or None when sent to the whole room.
        self.addressee = addressee

    rooms = property(lambda self: self._context.rooms)
    config = property(lambda self: self._context.config)
    metrics = property(lambda self: self._context.metrics)
    clock = property(lambda self: self._context.clock)
    messages = property(lambda self: self._context.messages)
    calls = property(lambda self: self._context.calls)
    server_id = property(lambda self: self._context.messages.server_id)

    def now(self) -> str:
        context = self._context
        return context.date(context.clock.seconds())

    def reply(self, message: dict[str, Any]) -> None:
        self._context.delivery.local.send_on(self.member.connection, message)

    def error(self, code: int, details: str) -> None:
        self.reply(self._context.messages.session_error(self.reply_to, code, details))

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        self._context.delivery.local.send(connection_id, message)

    def send_to(self, member: RoomMember, message: dict[str, Any]) -> None:
        self._context.delivery.send_to(member, message)

    def relay(self, message: dict[str, Any]) -> int:
        room = self.room
        if room is None:
            return 0
        member = self.member
        return self._context.delivery.relay(room, member.connection_id, member.uid, message, self._received_at, self.addressee)

    def announce_join(self, rid: str, kind: str, member: RoomMember, targets: Iterable[RoomMember]) -> None:
        self._context.announcer.joined(rid, kind, member, targets)

    def announce_leave(self, result: LeaveResult) -> None:
        self._context.announcer.left(result)
