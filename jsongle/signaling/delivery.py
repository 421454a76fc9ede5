"""Where messages to room members go: this process's connections, or the bus.

Relays are delivered here, in one place: a relayed message is encoded once
and only its ``to`` differs per recipient.
"""

from __future__ import annotations

from typing import Any, Optional

import orjson

from jsongle.interfaces import IMessageBus
from jsongle.jsontext import dumps_bytes
from jsongle.metrics import Metrics
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.messages import MUC
from jsongle.signaling.rooms import Room, RoomMember


class Delivery:
    """Sends to room members wherever they are connected, and relays."""

    __slots__ = ("local", "bus", "_metrics", "_clock")

    def __init__(self, local: LocalConnections, bus: IMessageBus, metrics: Metrics, clock: Any) -> None:
        self.local = local
        self.bus = bus
        self._metrics = metrics
        self._clock = clock

    def send_to(self, member: RoomMember, message: dict[str, Any]) -> None:
        """Deliver to a room member, here or through the bus on its node."""
        if not self.local.send(member.connection_id, message) and member.node and member.node != self.bus.node_id:
            self.bus.send(member.node, member.connection_id, message)

    def relay(
        self, room: Room, sender_id: str, sender_uid: str, message: dict[str, Any], received_at: float,
        addressee: Optional[str] = None,
    ) -> int:
        """Copy ``message`` to the other members of ``room``, or to the
        connections of member ``addressee`` only; returns how many.

        ``from`` becomes the room id, or ``<rid>/<uid of the sender>`` in
        namespace ``muc`` and for a message to one member.
        """
        jsongle = message["jsongle"]
        if addressee is None:
            targets = [target for target in room.members if target.connection_id != sender_id]
            origin = f"{room.rid}/{sender_uid}" if jsongle.get("namespace") == MUC else room.rid
        else:
            targets = [target for target in room.members if target.uid == addressee and target.connection_id != sender_id]
            origin = f"{room.rid}/{sender_uid}"
        if not targets:
            return 0
        # The copies differ only in 'to': for the members connected here the
        # rest is encoded once, after a prefix made when each connected.
        copy = dict(message)
        copy.pop("to", None)
        copy["from"] = origin
        metrics = self._metrics
        try:
            rest = orjson.dumps(copy)[1:]  # what dumps_bytes does first, without a call
        except TypeError:
            try:
                rest = dumps_bytes(copy)[1:]
            except TypeError:  # binary attachments: each connection encodes its copy
                rest = None
        addressed = self.local.addressed
        for target in targets:
            here = addressed(target.connection_id) if rest is not None else None
            if here is not None:
                connection, prefix = here
                metrics.sent_bytes += connection.send_json(prefix + rest)
            else:
                self.send_to(target, dict(copy, to=target.connection_id))
        count = len(targets)
        metrics.relay_latency.observe(self._clock.seconds() - received_at)
        action = jsongle.get("action")
        metrics.relayed.add(action if action.__class__ is str else "", count)
        return count
