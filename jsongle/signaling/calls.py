"""Calls in progress: from ``session-accept`` to their end.

A call is counted by the process where its ``session-accept`` passed (the
callee's), once: ``p2p_count`` for calls in P2P rooms,
``jsongle_conference_calls`` for member-to-member calls in MUC rooms. It ends
with a ``session-terminate`` of that sid in that room, or when one of its
parties leaves the room or drops, whichever comes first; what happens on
another process of a cluster reaches this one as the terminate or ``left``
copy for the local party, which :meth:`Calls.from_other_node` watches.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional

from jsongle.metrics import Metrics
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.messages import LEFT, MUC, SESSION_EVENT
from jsongle.signaling.rooms import RoomMember

TERMINATE = "session-terminate"


class Party(NamedTuple):
    connection_id: str
    uid: str


class Call(NamedTuple):
    kind: str
    parties: frozenset[Party]


class Calls:
    """The calls in progress on this process, kept in the two gauges."""

    __slots__ = ("_metrics", "_local", "_calls", "_by_room")

    def __init__(self, metrics: Metrics, local: LocalConnections) -> None:
        self._metrics = metrics
        self._local = local
        #: (rid, sid) -> the call.
        self._calls: dict[tuple[str, Any], Call] = {}
        #: rid -> the sids of its calls.
        self._by_room: dict[str, set[Any]] = {}

    def _gauge(self, kind: str) -> Any:
        return self._metrics.conference_calls if kind == MUC else self._metrics.p2p_count

    def accepted(self, rid: str, kind: str, sid: Any, parties: Iterable[RoomMember]) -> None:
        """A ``session-accept`` of ``sid`` in room ``rid`` reached ``parties``
        (the accepter among them); a second accept of the same call changes nothing."""
        key = (rid, sid)
        if key in self._calls:
            return
        members = frozenset(Party(p.connection_id, p.uid) for p in parties)
        if len(members) < 2:
            return
        self._calls[key] = Call(kind, members)
        self._by_room.setdefault(rid, set()).add(sid)
        self._gauge(kind).inc()

    def terminated(self, rid: str, sid: Any) -> None:
        """A ``session-terminate`` of ``sid`` in ``rid``."""
        self._end(rid, sid)

    def left(self, rid: str, uid: str, connection_id: Optional[str] = None) -> None:
        """A member left ``rid`` (or dropped): its calls there end.

        Known by connection here; by uid when only a ``left`` event for a
        member of another process tells it.
        """
        sids = self._by_room.get(rid)
        if not sids:
            return
        for sid in list(sids):
            call = self._calls[(rid, sid)]
            if any(p.connection_id == connection_id if connection_id is not None else p.uid == uid for p in call.parties):
                self._end(rid, sid)

    def _end(self, rid: str, sid: Any) -> None:
        call = self._calls.pop((rid, sid), None)
        if call is None:
            return
        sids = self._by_room[rid]
        sids.discard(sid)
        if not sids:
            del self._by_room[rid]
        self._gauge(call.kind).dec()

    def of(self, connection_id: str) -> list[list[Any]]:
        """The calls ``connection_id`` takes part in, as JSON-able data (its
        session goes to another process, which counts them from then on)."""
        return [
            [rid, sid, call.kind, [[p.connection_id, p.uid] for p in call.parties]]
            for (rid, sid), call in self._calls.items()
            if any(p.connection_id == connection_id for p in call.parties)
        ]

    def hand_over(self, connection_id: str) -> None:
        """Stop counting the calls of a connection whose session went elsewhere."""
        for rid, sid, _, _ in self.of(connection_id):
            self._end(rid, sid)

    def take_over(self, calls: Any) -> None:
        """Count the calls of a session taken over from another process (:meth:`of` there)."""
        for rid, sid, kind, parties in calls if isinstance(calls, list) else ():
            self.accepted(rid, kind, sid, (RoomMember(cid, uid, {}) for cid, uid in parties))

    def from_other_node(self, connection_id: str, message: Any) -> None:
        """A message another process sends to a connection of this one: delivered,
        and watched for the end of a call counted here."""
        if self._by_room:
            jsongle = message.get("jsongle") if isinstance(message, dict) else None
            if isinstance(jsongle, dict):
                action = jsongle.get("action")
                if action == TERMINATE:
                    self._remote_terminate(message.get("from"), jsongle.get("sid"))
                elif action == SESSION_EVENT and jsongle.get("event") == LEFT:
                    description = jsongle.get("description")
                    if isinstance(description, dict) and isinstance(description.get("member"), dict):
                        uid = description["member"].get("uid")
                        if isinstance(description.get("rid"), str) and isinstance(uid, str):
                            self.left(description["rid"], uid)
        self._local.send(connection_id, message)

    def _remote_terminate(self, origin: Any, sid: Any) -> None:
        """``from`` of a relayed copy is the room id, or ``<rid>/<uid>``."""
        if not isinstance(origin, str):
            return
        if (origin, sid) in self._calls:
            self._end(origin, sid)
            return
        rid = origin.rpartition("/")[0]
        while rid:
            if (rid, sid) in self._calls:
                self._end(rid, sid)
                return
            rid = rid.rpartition("/")[0]
