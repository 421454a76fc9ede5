"""Test doubles of the seams, each a real provider of its interface, and the
JSONgle application wired around them as the service wires it."""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from zope.interface import implementer

from jsongle.config import Config
from jsongle.dates import IsoDates
from jsongle.interfaces import IConnection, IMessageBus
from jsongle.jsontext import dumps_bytes
from jsongle.metrics import Metrics
from jsongle.randompool import RandomPool
from jsongle.signaling.announcer import Announcer
from jsongle.signaling.application import SignalingApplication, build_application
from jsongle.signaling.bus import LocalBus
from jsongle.signaling.calls import Calls
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.delivery import Delivery
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.messages import Messages, RandomIds
from jsongle.signaling.roomrules import RoomCaps
from jsongle.signaling.rooms import InMemoryRoomRegistry


@implementer(IConnection)
class FakeConnection:
    """A connection that records what it is sent, decoded; sizes are the JSON's."""

    def __init__(self, sid: str, transport: str = "websocket") -> None:
        self.id = sid
        self.transport = transport
        self.remote = "127.0.0.1:40000"
        self.received_size = 0
        self.state: Any = None
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    @property
    def sid(self) -> str:
        return self.id

    def send(self, message: Any) -> int:
        self.sent.append(message)
        return len(dumps_bytes(message))

    def send_json(self, data: bytes) -> int:
        self.sent.append(json.loads(data))
        return len(data)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[dict[str, Any]]:
        """The messages received since the last take."""
        sent, self.sent = self.sent, []
        return sent

    def take_one(self) -> dict[str, Any]:
        sent = self.take()
        assert len(sent) == 1, sent
        return sent[0]


@implementer(IMessageBus)
class RecordingBus:
    """Records what would go to other nodes; ``deliver`` is what they send here."""

    node_id = "here"

    def __init__(self, deliver: Callable[[str, Any], Any]) -> None:
        self.carried: list[tuple[str, str, dict[str, Any]]] = []
        self.deliver = deliver

    def send(self, node: str, connection_id: str, message: dict[str, Any]) -> None:
        self.carried.append((node, connection_id, message))


class Parts:
    """The application and the parts around it, wired in the service's order."""

    def __init__(
        self, config: Config, clock: Clock, handlers: HandlerSet, server_id: str = "jsongle-server",
        bus: Optional[Callable[[Calls], IMessageBus]] = None, **identity: Any,
    ) -> None:
        self.clock = clock
        self.metrics = Metrics(CollectorRegistry())
        self.messages = Messages(server_id, RandomIds(RandomPool()), IsoDates().text, clock)
        self.local = LocalConnections(self.metrics)
        self.calls = Calls(self.metrics, self.local)
        self.bus = bus(self.calls) if bus is not None else LocalBus()
        self.delivery = Delivery(self.local, self.bus, self.metrics, clock)
        self.announcer = Announcer(self.messages, self.delivery, self.calls)
        self.rooms = InMemoryRoomRegistry(
            RoomCaps(config.max_members_per_room, config.max_members_per_multi_room, config.max_multi_room_per_user)
        )
        self.app: SignalingApplication = build_application(
            config, clock, handlers, self.metrics, self.messages, self.local, self.delivery, self.rooms, self.announcer,
            self.calls, **identity,  # tokens, ice_servers, self_check (per-user tokens and TURN)
        )
