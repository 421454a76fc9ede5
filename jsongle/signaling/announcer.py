"""The ``joined`` and ``left`` events: built here, and only here."""

from __future__ import annotations

from typing import Iterable

from jsongle.signaling.calls import Calls
from jsongle.signaling.delivery import Delivery
from jsongle.signaling.messages import JOINED, LEFT, Messages
from jsongle.signaling.rooms import LeaveResult, RoomMember


class Announcer:
    """Tells room members who came and who went, wherever they are connected;
    a member who went ends its calls in that room."""

    __slots__ = ("_messages", "_delivery", "_calls")

    def __init__(self, messages: Messages, delivery: Delivery, calls: Calls) -> None:
        self._messages = messages
        self._delivery = delivery
        self._calls = calls

    def joined(self, rid: str, kind: str, member: RoomMember, targets: Iterable[RoomMember]) -> None:
        """Tell ``targets`` that ``member`` joined ``rid``."""
        for target in targets:
            self._delivery.send_to(target, self._messages.room_event(target.connection_id, kind, JOINED, rid, member.identity))

    def left(self, result: LeaveResult) -> None:
        """Tell the remaining members that ``result.left`` left (conferences_count reads the registry)."""
        self._calls.left(result.rid, result.left.uid, result.left.connection_id)
        for target in result.remaining:
            self._delivery.send_to(
                target, self._messages.room_event(target.connection_id, result.kind, LEFT, result.rid, result.left.identity)
            )

    def left_all(self, results: Iterable[LeaveResult]) -> None:
        for result in results:
            self.left(result)
