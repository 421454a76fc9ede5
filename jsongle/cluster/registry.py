"""The Redis-backed :class:`IRoomRegistry`: one set of rooms for every node.

Joins and leaves run as Lua scripts (see :mod:`jsongle.cluster.scripts`), so
caps hold cluster-wide.  Relays need the target room per message, without a
round trip: each node keeps a copy of the rooms its own clients are in,
updated from the script answers and from the snapshots Redis publishes on
every change, ordered by the cluster-wide sequence number.

While Redis is away, joins and leaves answer 503001; a connection that goes
meanwhile is remembered and leaves its rooms once Redis is back, after this
node has put its members back (Redis may have restarted empty).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle.cluster import scripts
from jsongle.cluster.link import RedisLink, RedisUnavailable
from jsongle.interfaces import IRoomRegistry
from jsongle.signaling import errors, roomrules
from jsongle.signaling.announcer import Announcer
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.rooms import JoinResult, LeaveResult, Room, RoomMember
from jsongle.signaling.roomrules import RoomCaps

UNAVAILABLE_DETAILS = "Rooms are unavailable: the cluster's Redis cannot be reached; try again later"


def unavailable() -> JsongleError:
    return JsongleError(errors.UNAVAILABLE, UNAVAILABLE_DETAILS)


def _member(entry: list[Any]) -> RoomMember:
    cid, uid, identity, node = entry
    return RoomMember(cid, uid, json.loads(identity), node)


def _entry(member: RoomMember) -> list[str]:
    return [member.connection_id, member.uid, json.dumps(member.identity, separators=(",", ":")), member.node]


def _members(entries: Any) -> tuple[RoomMember, ...]:
    # cjson writes an empty Lua table as {}, and false for "none".
    return tuple(_member(e) for e in entries) if isinstance(entries, list) else ()


@implementer(IRoomRegistry)
class RedisRoomRegistry:
    """Rooms in Redis, with this node's rooms cached for relays."""

    log = Logger()

    def __init__(self, link: RedisLink, node_id: str, caps: RoomCaps, announcer: Announcer) -> None:
        self.link = link
        self.node_id = node_id
        self.caps = caps
        #: Tells members of this node about leaves later than their disconnect
        #: (Redis was away) or of a dead node, and about the ``left`` and
        #: ``joined`` they missed while this node's link was down.
        self.announcer = announcer
        #: Rooms with at least one member on this node.
        self._rooms: dict[str, Room] = {}
        #: Sequence number of the last change applied per room (kept a while
        #: after a room leaves the cache, so an older snapshot cannot revive it).
        self._seqs: dict[str, int] = {}
        #: Connections gone while Redis was away: they leave on resync.
        self._pending_leaves: list[str] = []
        #: The token Redis holds for its current life (set by the heartbeat):
        #: the same token after a reconnection means Redis kept its state.
        self.epoch: Optional[str] = None

    # -- IRoomRegistry -----------------------------------------------------

    def join(self, rid: str, kind: str, member: RoomMember) -> Deferred:
        if not self.link.up:
            return fail(unavailable())
        member = member._replace(node=self.node_id)
        return self._join(rid, kind, member, force=False).addCallback(self._joined, rid, kind, member)

    def _join(self, rid: str, kind: str, member: RoomMember, force: bool) -> Deferred:
        caps = self.caps
        args = [rid, kind, *_entry(member), caps.max_members_per_room, caps.max_members_per_multi_room,
                caps.max_multi_room_per_user, "1" if force else "0"]
        return self.link.script(scripts.JOIN, [], args).addCallbacks(json.loads, _map_unavailable)

    def _joined(self, answer: dict[str, Any], rid: str, kind: str, member: RoomMember) -> JoinResult:
        outcome = answer["r"]
        if outcome == "err":
            raise roomrules.join_refusal(answer["code"], rid, kind)
        room = self._apply(rid, answer["seq"], answer["room"])
        assert room is not None
        others = tuple(m for m in room.members if m.connection_id != member.connection_id)
        if outcome == "already":
            return JoinResult(room, others, created=False, already=True)
        return JoinResult(room, others, created=bool(answer["created"]), already=False)

    def leave(self, rid: str, connection_id: str) -> Deferred:
        if not self.link.up:
            return fail(unavailable())
        return self.link.script(scripts.LEAVE, [], [rid, connection_id]).addCallbacks(
            json.loads, _map_unavailable
        ).addCallback(self._left, rid)

    def _left(self, answer: dict[str, Any], rid: str) -> LeaveResult:
        if answer["r"] == "none":
            raise roomrules.not_a_member(rid, answer["kind"])
        return self._result(answer)

    def leave_all(self, connection_id: str) -> Deferred:
        if not self.link.up:
            self._pending_leaves.append(connection_id)
            return succeed([])

        def later(failure: Failure) -> list[LeaveResult]:
            failure.trap(RedisUnavailable)
            self._pending_leaves.append(connection_id)
            return []

        return self.link.script(scripts.LEAVE_ALL, [], [connection_id]).addCallbacks(
            self._results, later
        )

    def room(self, rid: str) -> Optional[Room]:
        return self._rooms.get(rid)

    def room_count(self) -> int:
        return len(self._rooms)

    # -- the local copy ----------------------------------------------------

    def _results(self, raw: str) -> list[LeaveResult]:
        return [self._result(answer) for answer in json.loads(raw)]

    def _result(self, answer: dict[str, Any]) -> LeaveResult:
        rid = answer["rid"]
        remaining = _members(answer["remaining"])
        self._apply(rid, answer["seq"], {"k": answer["kind"], "m": answer["remaining"]} if remaining else False)
        return LeaveResult(rid, answer["kind"], _member(answer["left"]), remaining)

    def _apply(self, rid: str, seq: int, snapshot: Any, published: bool = False) -> Optional[Room]:
        """Take a room snapshot unless a newer one was applied already."""
        if seq < self._seqs.get(rid, -1):
            return self._rooms.get(rid)
        room = Room(rid, snapshot["k"], _members(snapshot["m"])) if snapshot else None
        if room is not None and any(m.node == self.node_id for m in room.members):
            self._rooms[rid] = room
            self._seqs[rid] = seq
        else:
            self._rooms.pop(rid, None)
            if published:
                # Published changes arrive in commit order: nothing older can follow.
                self._seqs.pop(rid, None)
            else:
                self._seqs[rid] = seq
        return room

    def published(self, update: dict[str, Any]) -> None:
        """A room snapshot Redis published to this node."""
        self._apply(update["rid"], update["seq"], update["room"], published=True)

    # -- resynchronising ---------------------------------------------------

    def resync(self) -> Deferred:
        """Put this node's members back in Redis, then let the departed leave.

        When Redis kept its state (only this node's link broke), the changes
        missed meanwhile are told to this node's members as ``left`` and
        ``joined`` events, and the others hear ``joined`` for members of this
        node that were swept in between.  When Redis restarted empty, every
        node puts its own members back and nobody is told anything: nobody
        left.  The sequence restarts with Redis, so its bookkeeping goes.
        """
        before = dict(self._rooms)
        saved = self.epoch
        self._seqs.clear()

        def restore(epoch: Any) -> Deferred:
            kept = saved is not None and epoch == saved
            restores = []
            for room in before.values():
                for member in room.members:
                    if member.node == self.node_id and member.connection_id not in self._pending_leaves:
                        restores.append(
                            self._join(room.rid, room.kind, member, force=True).addCallback(
                                self._restored, room.rid, member, kept
                            )
                        )
            done = DeferredList(restores, consumeErrors=True)
            if kept:
                done.addCallback(lambda _: self._tell_missed(before))
            return done

        result = self.link.command("GET", scripts.PREFIX + "epoch").addCallback(restore)
        return result.addCallback(lambda _: self._leave_pending())

    def _restored(self, answer: dict[str, Any], rid: str, member: RoomMember, kept: bool) -> None:
        if answer["r"] == "err":
            return
        room = self._apply(rid, answer["seq"], answer["room"])
        if kept and answer["r"] == "ok" and room is not None:
            # Swept while away: the others were told it left; now it is back.
            others = tuple(m for m in room.members if m.connection_id != member.connection_id)
            self.announcer.joined(rid, room.kind, member, others)

    def _tell_missed(self, before: dict[str, Room]) -> None:
        """Events this node's members missed while its link was down."""
        for rid, old in before.items():
            new = self._rooms.get(rid)
            if new is None:
                continue
            locals_ = tuple(m for m in new.members if m.node == self.node_id)
            now = {m.connection_id for m in new.members}
            then = {m.connection_id for m in old.members}
            for gone in old.members:
                if gone.node != self.node_id and gone.connection_id not in now:
                    self.announcer.left(LeaveResult(rid, new.kind, gone, locals_))
            for came in new.members:
                if came.node != self.node_id and came.connection_id not in then:
                    self.announcer.joined(rid, new.kind, came, locals_)

    def _leave_pending(self) -> Deferred:
        pending, self._pending_leaves = self._pending_leaves, []
        for rid, room in list(self._rooms.items()):
            members = tuple(m for m in room.members if m.connection_id not in pending)
            if not any(m.node == self.node_id for m in members):
                del self._rooms[rid]
        leaves = [self.leave_all(cid).addCallback(self._announce_all) for cid in pending]
        return DeferredList(leaves, consumeErrors=True)

    def _announce_all(self, results: Iterable[LeaveResult]) -> None:
        self.announcer.left_all(results)

    def sweep(self, node: str, force: bool = False) -> Deferred:
        """Remove a dead node's connections from every room; announce the leaves."""
        return self.link.script(scripts.SWEEP, [], [node, "1" if force else "0"]).addCallback(
            self._results
        ).addCallback(self._swept, node)

    def _swept(self, results: list[LeaveResult], node: str) -> list[LeaveResult]:
        if results:
            self.log.warn("node {node} is gone: {count} member(s) removed from their rooms", node=node, count=len(results))
        self._announce_all(results)
        return results


def _map_unavailable(failure: Failure) -> Any:
    if failure.check(RedisUnavailable):
        raise unavailable()
    return failure
