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
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle.cluster import scripts
from jsongle.cluster.bus import node_channel
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

    def __init__(self, link: RedisLink, node_id: str, caps: RoomCaps, announcer: Announcer, announce_wait: float) -> None:
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
        #: True from Redis's return until this node's members are back and
        #: the departed have left: joins and leaves wait in ``_held``.
        self._resyncing = False
        self._held: list[Deferred] = []
        #: How long a ``left`` for another node's members waits for that node
        #: to listen again (nodeTimeout: past it, the node is dead anyway).
        self.announce_wait = announce_wait
        #: The token Redis holds for its current life (set by the heartbeat):
        #: the same token after a reconnection means Redis kept its state.
        self.epoch: Optional[str] = None

    # -- IRoomRegistry -----------------------------------------------------

    def join(self, rid: str, kind: str, member: RoomMember) -> Deferred:
        if not self.link.up:
            return fail(unavailable())
        if self._resyncing:
            return self._after_resync().addCallback(lambda _: self.join(rid, kind, member))
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
        if self._resyncing:
            return self._after_resync().addCallback(lambda _: self.leave(rid, connection_id))
        return self.link.script(scripts.LEAVE, [], [rid, connection_id]).addCallbacks(
            json.loads, _map_unavailable
        ).addCallback(self._left, rid)

    def _left(self, answer: dict[str, Any], rid: str) -> LeaveResult:
        if answer["r"] == "none":
            raise roomrules.not_a_member(rid, answer["kind"])
        return self._result(answer)

    def leave_all(self, connection_id: str) -> Deferred:
        if not self.link.up or self._resyncing:
            self._pending_leaves.append(connection_id)
            return succeed([])
        return self._leave_all_now(connection_id)

    def _leave_all_now(self, connection_id: str) -> Deferred:
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

        A member goes back only where the caps and the room still let it in
        (a long outage got it swept and its seat taken, or a new join beat
        the restore after Redis restarted empty); otherwise it is out of the
        room, and it hears ``left`` about itself.  When Redis kept its state
        (only this node's link broke), the changes missed meanwhile are told
        to this node's members as ``left`` and ``joined`` events, and the
        others hear ``joined`` for members of this node that were swept in
        between.  Connections that went while Redis was away leave; the
        members of their rooms hear it even when Redis restarted empty and
        had nothing to remove.  Joins and leaves wait until all this is
        done, so none sees a room before its members are back.  The sequence
        restarts with Redis, so its bookkeeping goes.
        """
        before = dict(self._rooms)
        saved = self.epoch
        self._seqs.clear()
        self._resyncing = True
        kept = [False]

        def restore(epoch: Any) -> Deferred:
            kept[0] = saved is not None and epoch == saved
            restores = []
            for room in before.values():
                for member in room.members:
                    if member.node == self.node_id and member.connection_id not in self._pending_leaves:
                        restores.append(
                            self._join(room.rid, room.kind, member, force=False).addCallback(
                                self._restored, room, member, kept[0]
                            )
                        )
            done = DeferredList(restores, consumeErrors=True)
            if kept[0]:
                done.addCallback(lambda _: self._tell_missed(before))
            return done

        result = self.link.command("GET", scripts.PREFIX + "epoch").addCallback(restore)
        result.addCallback(lambda _: self._leave_pending(before, kept[0]))
        return result.addBoth(self._resynced)

    def _after_resync(self) -> Deferred:
        waiter: Deferred = Deferred()
        self._held.append(waiter)
        return waiter

    def _resynced(self, outcome: Any) -> Any:
        """Release the held joins and leaves (they fail with 503001 if Redis went again)."""
        self._resyncing = False
        held, self._held = self._held, []
        for waiter in held:
            waiter.callback(None)
        return outcome

    def _restored(self, answer: dict[str, Any], before: Room, member: RoomMember, kept: bool) -> None:
        rid = before.rid
        if answer["r"] == "err":
            self._shut_out(before, member, kept)
            return
        room = self._apply(rid, answer["seq"], answer["room"])
        if answer["r"] != "ok" or room is None:
            return
        others = tuple(m for m in room.members if m.connection_id != member.connection_id)
        if kept:
            # Swept while away: the others were told it left; now it is back.
            self.announcer.joined(rid, room.kind, member, others)
            return
        # Redis restarted empty and someone joined before this node was back:
        # the newcomer was not shown this member, nor this member the newcomer.
        known = {m.connection_id for m in before.members}
        newcomers = tuple(m for m in others if m.connection_id not in known)
        if newcomers:
            self.announcer.joined(rid, room.kind, member, newcomers)
            for newcomer in newcomers:
                self.announcer.joined(rid, room.kind, newcomer, (member,))

    def _shut_out(self, before: Room, member: RoomMember, kept: bool) -> None:
        """No room for ``member`` any more: it is out, and hears so about itself."""
        self.log.info("{cid} could not be put back in {rid}: it leaves the room", cid=member.connection_id, rid=before.rid)
        self._forget_member(before.rid, member.connection_id)
        targets = (member,) + self._told_of_departure(before, member, kept, frozenset(self._pending_leaves))
        self._announce_departure(LeaveResult(before.rid, before.kind, member, targets))

    def _told_of_departure(
        self, before: Room, gone: RoomMember, kept: bool, departing: frozenset[str]
    ) -> tuple[RoomMember, ...]:
        """Who must hear that ``gone`` left ``before``, when Redis could not say.

        This node's members always (its link was down: nobody told them);
        the other nodes' members only if Redis restarted empty (if it kept
        its state, the sweep that removed ``gone`` told them).
        """
        return tuple(
            m for m in before.members
            if m.connection_id != gone.connection_id and m.connection_id not in departing
            and (m.node == self.node_id or not kept)
        )

    def _forget_member(self, rid: str, connection_id: str) -> None:
        room = self._rooms.get(rid)
        if room is None:
            return
        members = tuple(m for m in room.members if m.connection_id != connection_id)
        if any(m.node == self.node_id for m in members):
            self._rooms[rid] = room._replace(members=members)
        else:
            del self._rooms[rid]

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

    def _leave_pending(self, before: dict[str, Room], kept: bool) -> Deferred:
        pending, self._pending_leaves = self._pending_leaves, []
        departing = frozenset(pending)
        leaves = [
            self.link.script(scripts.LEAVE_ALL, [], [cid]).addCallback(self._results).addCallbacks(
                self._departed, self._still_pending, (cid, before, kept, departing), None, (cid,)
            )
            for cid in pending
        ]
        return DeferredList(leaves, consumeErrors=True)

    def _still_pending(self, failure: Failure, cid: str) -> None:
        failure.trap(RedisUnavailable)
        self._pending_leaves.append(cid)

    def _departed(
        self, results: list[LeaveResult], cid: str, before: dict[str, Room], kept: bool, departing: frozenset[str]
    ) -> None:
        """Announce a connection that went while Redis was away, in every room
        it was in, whether Redis still had it there or not."""
        self._announce_all(results)
        found = {result.rid for result in results}
        for rid, room in before.items():
            gone = next((m for m in room.members if m.connection_id == cid), None)
            if gone is None:
                continue
            self._forget_member(rid, cid)
            if rid not in found:
                targets = self._told_of_departure(room, gone, kept, departing)
                if targets:
                    self._announce_departure(LeaveResult(rid, room.kind, gone, targets))

    def _announce_departure(self, result: LeaveResult) -> None:
        """Tell this node's members now, another node's once it listens.

        After Redis restarted empty the other nodes reconnect on their own
        back-off; a copy published to a node not subscribed yet is lost.
        """
        here = tuple(m for m in result.remaining if m.node == self.node_id)
        if here:
            self.announcer.left(result._replace(remaining=here))
        elsewhere: dict[str, list[RoomMember]] = {}
        for target in result.remaining:
            if target.node != self.node_id:
                elsewhere.setdefault(target.node, []).append(target)
        deadline = self.link.clock.seconds() + self.announce_wait
        for node, targets in elsewhere.items():
            told = result._replace(remaining=tuple(targets))
            self._when_listening(node, deadline).addCallback(lambda _, told=told: self.announcer.left(told))

    def _when_listening(self, node: str, deadline: float) -> Deferred:
        """Fires once ``node`` is subscribed to its channel (or at ``deadline``)."""

        def check(answer: Any) -> Any:
            if int(answer[1]) > 0 or self.link.clock.seconds() >= deadline:
                return None
            return deferLater(self.link.clock, 0.1, self._when_listening, node, deadline)

        return self.link.command("PUBSUB", "NUMSUB", node_channel(node)).addCallback(check).addErrback(lambda _: None)

    def _announce_all(self, results: Iterable[LeaveResult]) -> None:
        self.announcer.left_all(results)

    def sweep(self, node: str, force: bool = False, parked: bool = False) -> Deferred:
        """Remove a dead node's connections from every room (or a parked
        session's, ``parked``); announce the leaves."""
        return self.link.script(scripts.SWEEP, [], [node, "1" if force else "0"]).addCallback(
            lambda raw: None if raw == "null" else self._results(raw)
        ).addCallback(self._swept, node, parked)

    def _swept(self, results: Optional[list[LeaveResult]], node: str, parked: bool = False) -> Optional[list[LeaveResult]]:
        """Announce a sweep's leaves (None: a parked session swept by another node already)."""
        if results is None:
            return None
        if results and not parked:
            self.log.warn("node {node} is gone: {count} member(s) removed from their rooms", node=node, count=len(results))
        self._announce_all(results)
        return results


def _map_unavailable(failure: Failure) -> Any:
    if failure.check(RedisUnavailable):
        raise unavailable()
    return failure
