"""Every metric driven by traffic, against fake connections and a Clock.

The JSONgle application runs with the built-in handlers, the in-memory room
registry and metrics on a private CollectorRegistry.  Traffic sizes go
through the real Socket.IO layer on a recorded fake Engine.IO session, so
``recv_total``/``sent_total`` are checked against the bytes on the wire.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.defer import Deferred
from zope.interface import implementer

from jsongle.config import Config
from jsongle.interfaces import IActionHandler
from jsongle.metrics import BUSINESS, Metrics
from jsongle.signaling.builtin import builtin_actions, builtin_queries
from jsongle.signaling.handlers import HandlerSet
from jsongle.socketio.server import ConnectRefused, SocketIOServer, encoded_size
from jsongle.randompool import RandomPool, SessionIds
from tests.support.fakes import FakeConnection
from tests.test_signaling_unit import SERVER_ID, Server, pair

# -- fakes -----------------------------------------------------------------


class SizedConnection(FakeConnection):
    """A fake connection that reports every send as 1000 bytes."""

    def __init__(self, sid: str, transport: str = "polling") -> None:
        super().__init__(sid, transport)

    def send(self, message: Any) -> int:
        super().send(message)
        return 1000

    def send_json(self, data: bytes) -> int:
        super().send_json(data)
        return 1000


class Transport:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeSession:
    """What Socket.IO needs of an Engine.IO session; records the messages sent."""

    def __init__(self, sid: str, transport: str = "polling") -> None:
        self.sid = sid
        self.remote = "127.0.0.1"
        self.transport = Transport(transport)
        self.closed = False
        self.listener: Any = None
        self.sent: list[Any] = []

    def send_many(self, items: list[Any]) -> None:
        if not self.closed:
            self.sent.extend(items)

    def send_text(self, message: bytes) -> None:
        if not self.closed:
            self.sent.append(message.decode("utf-8"))

    def close(self, reason: str = "forced close") -> None:
        if not self.closed:
            self.closed = True
            self.listener.on_close(reason)

    def take(self) -> list[Any]:
        sent, self.sent = self.sent, []
        return sent


class Wire:
    """The application behind a real SocketIOServer, driven with Socket.IO text."""

    def __init__(self, config: Config = Config()) -> None:
        self.server = Server(config)
        self.socketio = SocketIOServer(
            {"/": self.server.app}, self.server.clock, 45.0, SessionIds(RandomPool()), self.server.metrics.connect_refused
        )
        self.received = 0  # bytes of jsongle events the clients sent
        self.sent = 0  # bytes of jsongle events the clients got

    def open(self, name: str, transport: str = "polling", auth: Optional[dict] = None) -> FakeSession:
        session = FakeSession(f"eio-{name}", transport)
        self.socketio.on_engine_open(session)  # type: ignore[arg-type]
        session.listener.on_message("0" + json.dumps(auth) if auth else "0")
        return session

    def connect(self, name: str, transport: str = "polling") -> tuple[FakeSession, str]:
        """A registered client: (session, Socket.IO sid)."""
        session = self.open(name, transport)
        connected, hello = self.events(session, jsongle_only=False)
        sid = json.loads(connected[1:])["sid"]
        self.emit(session, {"from": sid, "to": SERVER_ID, "jsongle": {
            "action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"],
            "description": {"uid": name}}})
        assert self.events(session)[0]["jsongle"]["status"] == "success"
        return session, sid

    def emit(self, session: FakeSession, message: Any) -> None:
        text = "2" + json.dumps(["jsongle", message], ensure_ascii=False)
        self.received += len(text.encode("utf-8"))
        session.listener.on_message(text)

    def events(self, session: FakeSession, jsongle_only: bool = True) -> list[Any]:
        """Decoded jsongle messages sent to ``session`` (counted in ``self.sent``)."""
        out: list[Any] = []
        for item in session.take():
            if item.startswith('2["jsongle",'):
                self.sent += len(item.encode("utf-8"))
                out.append(json.loads(item[1:])[1])
            elif not jsongle_only:
                out.append(item)
        return out

    def value(self, name: str, **labels: str) -> float:
        value = self.server.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def join(wire: Wire, session: FakeSession, sid: str, rid: str, query: str = "session-join") -> dict[str, Any]:
    wire.emit(session, {"from": sid, "to": SERVER_ID, "jsongle": {
        "action": "iq-set", "query": query, "transaction": "t", "description": {"rid": rid}}})
    return wire.events(session)[-1]


# -- business metrics ------------------------------------------------------


def test_stats_is_the_business_set():
    server = Server()
    stats = server.metrics.stats()
    assert list(stats) == list(BUSINESS)
    assert set(stats.values()) == {0.0}
    alice, bob = pair(server, "#muc#m1", "muc-join")
    server.send(alice, "#muc#m1", {"action": "session-text", "namespace": "muc", "description": {"content": "hi"}})
    stats = server.metrics.stats()
    assert list(stats) == list(BUSINESS)
    assert (stats["users_count"], stats["users_total"], stats["conferences_count"], stats["messages_total"]) == (2, 2, 1, 1)
    assert json.loads(json.dumps(stats)) == stats  # a flat JSON object


def test_users_and_duration():
    server = Server()
    alice, bob = server.connect("alice"), server.connect("bob")
    server.clock.advance(30)
    server.app.disconnect(alice, "transport close")
    server.clock.advance(60)
    server.app.disconnect(bob, "transport close")
    server.app.disconnect(bob, "transport close")
    stats = server.metrics.stats()
    assert (stats["users_count"], stats["users_total"], stats["duration_total"]) == (0, 2, 2.0)


def test_conferences_count_follows_the_registry():
    server = Server(Config(max_members_per_room=2))
    alice, bob, carol = server.connect("alice"), server.connect("bob"), server.connect("carol")

    def counts() -> tuple[float, float]:
        assert server.value("conferences_count") == server.rooms.room_count()
        return server.value("conferences_count"), server.value("conferences_total")

    server.join(alice, "r1")
    server.join(bob, "r1")
    assert server.join(carol, "r1")["action"] == "iq-error"  # full: nothing created
    assert counts() == (1, 1)
    server.join(carol, "#muc#a", "muc-join")
    server.join(alice, "#muc#a", "muc-join")
    server.join(carol, "#muc#b", "muc-join")
    assert counts() == (3, 3)
    server.leave(carol, "#muc#b")  # emptied
    assert counts() == (2, 3)
    assert server.leave(carol, "#muc#b")["action"] == "iq-error"  # not a member: no change
    assert counts() == (2, 3)
    server.app.disconnect(alice, "transport close")  # r1 keeps bob, #muc#a keeps carol
    assert counts() == (2, 3)
    server.app.disconnect(carol, "ping timeout")
    assert counts() == (1, 3)
    server.app.disconnect(bob, "transport close")
    assert counts() == (0, 3)


def test_p2p_messages_reactions():
    server = Server()
    alice, bob = pair(server)
    server.send(bob, "r1", {"action": "session-accept", "sid": "c1", "description": {}})
    server.send(alice, "r1", {"action": "session-metrics", "description": {"error": "ice-failed", "duration": 2.5}})
    carol, dave = pair(server, "#muc#m", "muc-join")
    server.send(carol, "#muc#m", {"action": "session-text", "namespace": "muc", "description": {"content": "x"}})
    server.send(dave, "#muc#m", {"action": "session-event", "namespace": "muc", "event": "reaction", "description": {}})
    stats = server.metrics.stats()
    assert [stats[k] for k in ("p2p_total", "p2p_failed_total", "p2p_duration_total", "messages_total", "reactions_total")] == [1, 1, 2.5, 1, 1]


# -- traffic sizes ---------------------------------------------------------


def test_traffic_is_the_bytes_on_the_wire():
    wire = Wire()
    alice, alice_sid = wire.connect("alice")
    bob, bob_sid = wire.connect("bob")
    join(wire, alice, alice_sid, "r1")
    join(wire, bob, bob_sid, "r1")
    wire.events(alice)  # joined
    for text in ("hello", "héllo ☃ 𝄞"):  # multi-byte UTF-8 counts as bytes
        wire.emit(alice, {"id": "m1", "from": alice_sid, "to": "r1", "jsongle": {
            "action": "session-text", "namespace": "room", "description": {"content": text}}})
        assert [m["jsongle"]["action"] for m in wire.events(alice)] == ["session-event"]  # ack
        assert [m["jsongle"]["description"]["content"] for m in wire.events(bob)] == [text]
    wire.emit(alice, "not jsongle")  # received, answered with an error: both count
    assert wire.events(alice)[0]["jsongle"]["action"] == "session-error"
    alice.listener.on_message('2["other",{"x":1}]')  # not the jsongle event: not counted
    assert wire.value("recv_total") == pytest.approx(wire.received / 1e6, abs=1e-12)
    assert wire.value("sent_total") == pytest.approx(wire.sent / 1e6, abs=1e-12)
    assert wire.received > 0 and wire.sent > wire.received


def test_sizes_reported_by_the_connection_are_summed():
    server = Server()
    connection = SizedConnection("sid-a")
    server.app.connect(connection, {})
    assert server.value("sent_total") == 1000 / 1e6
    connection.received_size = 250
    server.app.event(connection, "jsongle", [{"jsongle": {}}], None)
    assert server.value("recv_total") == 250 / 1e6
    assert server.value("sent_total") == 2000 / 1e6


def test_encoded_size():
    assert encoded_size(["abc", "é", b"\x00\x01"]) == 3 + 2 + 2


# -- operator metrics ------------------------------------------------------


def test_connections_by_transport():
    wire = Wire()
    alice, _ = wire.connect("alice", "polling")
    bob, _ = wire.connect("bob", "polling")
    carol, _ = wire.connect("carol", "websocket")
    assert (wire.value("jsongle_connections", transport="polling"), wire.value("jsongle_connections", transport="websocket")) == (2, 1)
    alice.transport = Transport("websocket")  # upgraded
    assert (wire.value("jsongle_connections", transport="polling"), wire.value("jsongle_connections", transport="websocket")) == (1, 2)
    bob.close("transport close")
    carol.listener.on_message("1")  # namespace disconnect
    assert (wire.value("jsongle_connections", transport="polling"), wire.value("jsongle_connections", transport="websocket")) == (0, 1)
    assert wire.value("users_count") == 1
    exposition = generate_latest(wire.server.metrics.registry).decode()
    assert 'jsongle_connections{transport="websocket"} 1.0' in exposition


def test_connect_errors_by_reason():
    wire = Wire(Config(app_token="secret", max_concurrent_users=1))
    wire.open("a", auth={"appToken": "wrong"})
    wire.open("b", auth={})
    wire.open("c", auth={"appToken": "secret"})
    wire.open("d", auth={"appToken": "secret"})  # full
    nowhere = FakeSession("eio-x")
    wire.socketio.on_engine_open(nowhere)  # type: ignore[arg-type]
    nowhere.listener.on_message("0/admin,")
    assert nowhere.take() == ['4/admin,{"message":"Invalid namespace"}']
    assert {reason: wire.value("jsongle_connect_errors_total", reason=reason) for reason in (
        "invalid appToken", "missing appToken", "server full", "Invalid namespace")} == {
        "invalid appToken": 1, "missing appToken": 1, "server full": 1, "Invalid namespace": 1}
    assert wire.value("users_total") == 1


def test_app_refusal_counts_once_without_socketio():
    server = Server(Config(app_token="secret"))
    with pytest.raises(ConnectRefused):
        server.app.connect(FakeConnection("x"), {"appToken": "nope"})
    assert server.metrics.registry.get_sample_value("jsongle_connect_errors_total", {"reason": "invalid appToken"}) == 1


def test_iq_errors_by_code():
    server = Server(Config(max_members_per_room=1))
    alice, bob = server.connect("alice"), server.connect("bob")
    server.join(alice, "r1")
    assert server.join(bob, "r1")["description"]["errorCode"] == 403001  # full
    server.leave(bob, "r9")  # not a member
    server.leave(bob, "r9")
    bob.take()
    server.send(bob, SERVER_ID, {"action": "iq-set", "query": "session-dance", "transaction": "t"})
    assert bob.take_one()["jsongle"]["description"]["errorCode"] == 404001
    registry = server.metrics.registry
    assert registry.get_sample_value("jsongle_iq_errors_total", {"code": "403001"}) == 1
    assert registry.get_sample_value("jsongle_iq_errors_total", {"code": "404002"}) == 2
    assert registry.get_sample_value("jsongle_iq_errors_total", {"code": "404001"}) == 1


def test_relayed_copies_by_action():
    server = Server()
    alice, bob = pair(server, "#muc#m", "muc-join")
    carol = server.connect("carol")
    server.join(carol, "#muc#m", "muc-join")
    server.send(alice, "#muc#m", {"action": "session-text", "namespace": "muc", "description": {"content": "x"}})
    server.send(alice, "#muc#m", {"action": "session-event", "namespace": "muc", "event": "typing", "description": {}})
    server.send(alice, "#muc#m", {"action": "session-metrics", "description": {}})  # never relayed
    registry = server.metrics.registry
    assert registry.get_sample_value("jsongle_relayed_messages_total", {"action": "session-text"}) == 2
    assert registry.get_sample_value("jsongle_relayed_messages_total", {"action": "session-event"}) == 2
    assert registry.get_sample_value("jsongle_relayed_messages_total", {"action": "session-metrics"}) is None
    # The label children are cached: no per-message labels() lookup.
    assert server.metrics.relayed("session-text") is server.metrics.relayed("session-text")


@implementer(IActionHandler)
class Slow:
    """Relays after ``delay`` seconds of the injected clock (at once or via a Deferred)."""

    call = False

    def __init__(self, action: str, delay: float, later: bool = False) -> None:
        self.action = action
        self.delay = delay
        self.later = later

    def handle(self, request: Any) -> Optional[Deferred]:
        if not self.later:
            request.clock.advance(self.delay)
            request.relay(request.message)
            return None
        done: Deferred = Deferred()
        request.clock.callLater(self.delay, lambda: done.callback(request.relay(request.message)))
        return done


def test_relay_latency_histogram():
    extra = [Slow("session-slow", 0.003), Slow("session-later", 0.05, later=True)]
    server = Server(handlers=HandlerSet(builtin_queries(), builtin_actions() + extra))
    alice, bob = pair(server)
    server.send(alice, "r1", {"action": "session-info", "sid": "c", "description": {}})  # Clock: 0 s
    server.send(alice, "r1", {"action": "session-slow"})
    server.send(alice, "r1", {"action": "session-later"})
    server.clock.advance(0.05)
    assert len(bob.take()) == 3
    bucket = lambda le: server.metrics.registry.get_sample_value("jsongle_relay_latency_seconds_bucket", {"le": le})  # noqa: E731
    assert (bucket("0.0001"), bucket("0.0025"), bucket("0.005"), bucket("0.025"), bucket("0.05"), bucket("+Inf")) == (1, 1, 2, 2, 3, 3)
    assert server.value("jsongle_relay_latency_seconds_count") == 3
    assert server.value("jsongle_relay_latency_seconds_sum") == pytest.approx(0.053)
