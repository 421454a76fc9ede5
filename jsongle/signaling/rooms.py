"""Room state: the snapshots every registry hands out, and the in-memory :class:`IRoomRegistry`.

Callers get immutable snapshots (:class:`Room`, :class:`RoomMember`) and
Deferreds for mutations, so a Redis-backed registry can take its place.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jsongle.interfaces import IRoomRegistry
from jsongle.signaling import roomrules
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.messages import MUC
from jsongle.signaling.roomrules import RoomCaps


class RoomMember(NamedTuple):
    """A connection in a room, with the identity others are shown.

    ``node`` is the cluster node holding the connection ('' in one process).
    """

    connection_id: str
    uid: str
    identity: dict[str, Any]
    node: str = ""


class Room(NamedTuple):
    rid: str
    kind: str
    members: tuple[RoomMember, ...]


class JoinResult(NamedTuple):
    room: Room
    others: tuple[RoomMember, ...]
    created: bool
    already: bool


class LeaveResult(NamedTuple):
    rid: str
    kind: str
    left: RoomMember
    remaining: tuple[RoomMember, ...]


@implementer(IRoomRegistry)
class InMemoryRoomRegistry:
    """Rooms of this process only."""

    def __init__(self, caps: RoomCaps) -> None:
        self.caps = caps
        self._rooms: dict[str, Room] = {}
        self._rooms_of: dict[str, set[str]] = {}
        # uid -> {MUC rid: connections of that uid in it}: the cap counts rooms, not devices.
        self._mucs_of_user: dict[str, dict[str, int]] = {}

    def join(self, rid: str, kind: str, member: RoomMember) -> Deferred:
        try:
            return succeed(self._join(rid, kind, member))
        except JsongleError as error:
            return fail(error)

    def _join(self, rid: str, kind: str, member: RoomMember) -> JoinResult:
        room = self._rooms.get(rid)
        if room is not None:
            if room.kind != kind:
                raise roomrules.wrong_kind(rid, kind)
            others = tuple(m for m in room.members if m.connection_id != member.connection_id)
            if len(others) != len(room.members):
                return JoinResult(room, others, created=False, already=True)
        else:
            others = ()
        if kind == MUC:
            if len(others) >= self.caps.max_members_per_multi_room:
                raise roomrules.full(kind)
            mucs = self._mucs_of_user.get(member.uid, {})
            if rid not in mucs and len(mucs) >= self.caps.max_multi_room_per_user:
                raise roomrules.too_many_rooms()
            mucs[rid] = mucs.get(rid, 0) + 1
            self._mucs_of_user[member.uid] = mucs
        elif len(others) >= self.caps.max_members_per_room:
            raise roomrules.full(kind)
        room = Room(rid, kind, others + (member,))
        self._rooms[rid] = room
        self._rooms_of.setdefault(member.connection_id, set()).add(rid)
        return JoinResult(room, others, created=not others, already=False)

    def leave(self, rid: str, connection_id: str) -> Deferred:
        result = self._leave(rid, connection_id)
        if result is None:
            room = self._rooms.get(rid)
            return fail(roomrules.not_a_member(rid, room.kind if room is not None else "room"))
        return succeed(result)

    def _leave(self, rid: str, connection_id: str) -> Optional[LeaveResult]:
        room = self._rooms.get(rid)
        if room is None:
            return None
        left = next((m for m in room.members if m.connection_id == connection_id), None)
        if left is None:
            return None
        remaining = tuple(m for m in room.members if m.connection_id != connection_id)
        if remaining:
            self._rooms[rid] = room._replace(members=remaining)
        else:
            del self._rooms[rid]
        mine = self._rooms_of.get(connection_id)
        if mine is not None:
            mine.discard(rid)
            if not mine:
                del self._rooms_of[connection_id]
        if room.kind == MUC:
            mucs = self._mucs_of_user.get(left.uid, {})
            count = mucs.pop(rid, 0) - 1
            if count > 0:
                mucs[rid] = count
            elif not mucs:
                self._mucs_of_user.pop(left.uid, None)
        return LeaveResult(rid, room.kind, left, remaining)

    def leave_all(self, connection_id: str) -> Deferred:
        results = []
        for rid in sorted(self._rooms_of.get(connection_id, ())):
            result = self._leave(rid, connection_id)
            if result is not None:
                results.append(result)
        return succeed(results)

    def room(self, rid: str) -> Optional[Room]:
        return self._rooms.get(rid)

    def room_count(self) -> int:
        return len(self._rooms)

    def rooms_of(self, connection_id: str) -> frozenset[str]:
        return frozenset(self._rooms_of.get(connection_id, ()))
