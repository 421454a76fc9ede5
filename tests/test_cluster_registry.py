"""The Redis registry, bus and node in this process, against a real Redis.

Two or three "nodes" share one Redis here, each with its own link, so the
scripts, the published snapshots and the resync can be checked without
daemons; the reconnection back-off is checked on a ``Clock``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from zope.interface.verify import verifyObject

from jsongle.cluster.bus import RedisBus, node_channel
from jsongle.cluster.link import Backoff, LinkTimeouts, RedisLink
from jsongle.cluster.node import ClusterNode
from jsongle.cluster.registry import RedisRoomRegistry
from jsongle.cluster.sessions import RedisSessionPark
from jsongle.config import RedisAddress
from jsongle.interfaces import IMessageBus, IRoomRegistry
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.roomrules import RoomCaps
from jsongle.signaling.rooms import RoomMember


def member(cid: str, uid: str | None = None) -> RoomMember:
    uid = uid or cid
    return RoomMember(cid, uid, {"uid": uid, "dn": uid.title()})


class RecordingAnnouncer:
    """What the registry tells members, recorded (the Announcer's methods)."""

    def __init__(self, node: "Node") -> None:
        self._node = node

    def joined(self, rid: str, kind: str, member: RoomMember, targets: Any) -> None:
        self._node.joins.append((rid, member.connection_id, [t.connection_id for t in targets]))

    def left(self, result: Any) -> None:
        self._node.announced.append(result)

    def left_all(self, results: Any) -> None:
        for result in results:
            self.left(result)


class Node:
    """A registry, bus and node service on their own link, like one daemon."""

    def __init__(
        self, port: int, node_id: str, caps: RoomCaps = RoomCaps(), node_timeout: float = 15.0, backoff: float = 0.05,
        window: float = 120.0, buffer_bytes: int = 1 << 20,
    ) -> None:
        self.delivered: list[tuple[str, dict[str, Any]]] = []
        self.announced: list[Any] = []
        self.joins: list[tuple[str, str, list[str]]] = []
        self.failures: list[tuple[str, str]] = []
        self.outcomes: list[str] = []
        self.link = RedisLink(RedisAddress("127.0.0.1", port, 0, None), node_channel(node_id), reactor, reactor,
                              self.failed, LinkTimeouts(), backoff_first=backoff, backoff_most=max(backoff, 0.2))
        self.registry = RedisRoomRegistry(self.link, node_id, caps, RecordingAnnouncer(self), node_timeout)
        self.park = RedisSessionPark(self.link, node_id, window, buffer_bytes, 10.0, self.outcomes.append, b'2["jsongle",')
        self.bus = RedisBus(self.link, node_id, lambda cid, message: self.delivered.append((cid, message)), self.park.keep_message)
        self.service = ClusterNode(
            self.link, self.registry, self.bus, self.park, reactor, node_timeout, lambda: 0, self.failed
        )

    def failed(self, what: str, error: str, warn: bool = True) -> None:
        self.failures.append((what, error))

    def start(self) -> Deferred:
        self.service.startService()
        return until(lambda: self.link.up, "link up")

    def stop(self) -> Deferred:
        return self.service.stopService() if self.service.running else self.link.stop()


@pytest_twisted.inlineCallbacks
def until(check: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` on the reactor until it is true; fail after ``timeout`` s."""
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        yield deferLater(reactor, 0.02, lambda: None)


@pytest.fixture
def nodes(redis_server):
    started: list[Node] = []

    @pytest_twisted.inlineCallbacks
    def start(node_id: str, **kwargs: Any) -> Any:
        node = Node(redis_server.port, node_id, **kwargs)
        started.append(node)
        yield node.start()
        return node

    yield start
    for node in started:
        pytest_twisted.blockon(node.stop())


@pytest_twisted.inlineCallbacks
def test_join_and_leave_reach_the_other_node(nodes):
    one = yield nodes("one")
    two = yield nodes("two")
    assert verifyObject(IRoomRegistry, one.registry) and verifyObject(IMessageBus, one.bus)
    joined = yield one.registry.join("r1", "room", member("alice"))
    assert joined.created and not joined.already and joined.others == ()
    joined = yield two.registry.join("r1", "room", member("bob"))
    assert [m.connection_id for m in joined.others] == ["alice"]
    assert joined.others[0].node == "one" and joined.room.members[1].node == "two"
    # Node one learns about Bob from the published snapshot.
    yield until(lambda: one.registry.room("r1") is not None and len(one.registry.room("r1").members) == 2, "snapshot")
    assert one.registry.room("r1") == two.registry.room("r1")
    again = yield two.registry.join("r1", "room", member("bob"))
    assert again.already
    left = yield one.registry.leave("r1", "alice")
    assert (left.rid, left.kind, left.left.connection_id) == ("r1", "room", "alice")
    assert [m.connection_id for m in left.remaining] == ["bob"]
    assert one.registry.room("r1") is None and one.registry.room_count() == 0
    yield until(lambda: len(two.registry.room("r1").members) == 1, "leave snapshot")
    with pytest.raises(JsongleError) as error:
        yield one.registry.leave("r1", "alice")
    assert (error.value.code, error.value.details) == (404002, "Not member of room r1")


@pytest_twisted.inlineCallbacks
def test_caps_are_atomic(nodes):
    one = yield nodes("one", caps=RoomCaps(2, 3, 1))
    two = yield nodes("two", caps=RoomCaps(2, 3, 1))
    yield one.registry.join("r1", "room", member("host"))
    # Twenty joins at once from two nodes for the last seat: one wins.
    attempts = [node.registry.join("r1", "room", member(f"{node.registry.node_id}-{n}"))
                for n in range(10) for node in (one, two)]
    outcomes = yield gatherResults([a.addCallbacks(lambda r: "ok", lambda f: f.value.code) for a in attempts])
    assert sorted(outcomes, key=str) == [403001] * 19 + ["ok"]
    # One multi-user room per user, counted over both nodes.
    yield one.registry.join("#muc#a", "muc", member("a1", "ann"))
    with pytest.raises(JsongleError) as error:
        yield two.registry.join("#muc#b", "muc", member("a2", "ann"))
    assert error.value.code == 403003
    yield two.registry.join("#muc#a", "muc", member("a2", "ann"))
    results = yield one.registry.leave_all("a1")
    assert [r.rid for r in results] == ["#muc#a"]
    yield two.registry.leave("#muc#a", "a2")
    yield two.registry.join("#muc#b", "muc", member("a2", "ann"))


@pytest_twisted.inlineCallbacks
def test_bus_delivers_to_the_node_of_the_connection(nodes):
    one = yield nodes("one")
    two = yield nodes("two")
    for n in range(20):
        one.bus.send("two", "bob", {"n": n})
    yield until(lambda: len(two.delivered) == 20, "deliveries")
    assert two.delivered == [("bob", {"n": n}) for n in range(20)]
    assert one.delivered == []


@pytest_twisted.inlineCallbacks
def test_dead_node_is_swept_once(nodes, redis_server):
    one = yield nodes("one", node_timeout=0.5)
    two = yield nodes("two", node_timeout=0.5)
    three = yield nodes("three", node_timeout=0.5)
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    yield two.registry.join("#muc#m", "muc", member("bob"))
    yield three.registry.join("#muc#m", "muc", member("carol"))
    # Node two stops beating without a goodbye, as after kill -9.
    two.service._loop.stop()
    yield two.link.stop()
    yield until(lambda: len(one.announced) + len(three.announced) == 2, "sweep")
    announced = sorted(one.announced + three.announced, key=lambda r: r.rid)
    assert [(r.rid, r.left.connection_id, [m.connection_id for m in r.remaining]) for r in announced] == [
        ("#muc#m", "bob", ["carol"]),
        ("r1", "bob", ["alice"]),
    ]
    yield until(lambda: one.service.stats.nodes == 2 and three.service.stats.nodes == 2, "gauges")
    assert redis_server.command("SISMEMBER", "jsongle:nodes", "two") == "0"
    assert len(one.registry.room("r1").members) == 1


@pytest_twisted.inlineCallbacks
def test_resync_after_redis_restarts_empty(nodes, redis_server):
    one = yield nodes("one")
    two = yield nodes("two")
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    yield two.registry.join("r2", "room", member("carol"))
    yield until(lambda: len(one.registry.room("r1").members) == 2, "snapshot")
    redis_server.stop()
    yield until(lambda: not one.link.up and not two.link.up, "links down")
    with pytest.raises(JsongleError) as error:
        yield one.registry.join("r3", "room", member("dave"))
    assert error.value.code == 503001
    # Carol goes while Redis is away: she leaves once it is back.
    assert (yield two.registry.leave_all("carol")) == []
    redis_server.start()
    yield until(lambda: one.link.up and two.link.up, "links up")
    yield until(lambda: redis_server.command("EXISTS", "jsongle:room:r1") == "1"
                and json.loads(redis_server_get(redis_server, "jsongle:room:r1"))["m"].__len__() == 2, "restored")
    yield until(lambda: redis_server.command("EXISTS", "jsongle:room:r2") == "0", "carol left")
    assert two.registry.room("r2") is None
    with pytest.raises(JsongleError) as error:
        yield one.registry.join("r1", "room", member("dave"))
    assert error.value.code == 403001


def redis_server_get(server: Any, key: str) -> str:
    """GET through a second connection (bulk replies need two lines)."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as conn:
        conn.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        data = b""
        while data.count(b"\r\n") < 2:
            data += conn.recv(65536)
    return data.split(b"\r\n")[1].decode()


def test_backoff_doubles_up_to_a_ceiling():
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1


class Listener:
    def link_up(self) -> None:
        pass

    def link_down(self) -> None:
        pass

    def received(self, raw: str) -> None:
        pass


@pytest_twisted.inlineCallbacks
def test_reconnection_waits_on_the_injected_clock(redis_server):
    """Attempts against a closed port are spaced by the back-off, on the Clock."""
    clock = Clock()
    port = redis_server.port
    redis_server.stop()
    link = RedisLink(RedisAddress("127.0.0.1", port, 0, None), "jsongle:node:x", reactor, clock,
                     lambda what, error, warn=True: None, LinkTimeouts(), backoff_first=1.0, backoff_most=4.0)
    slots = (link._commands, link._subscription)
    link.start(Listener())
    yield until(lambda: all(slot._retry is not None for slot in slots), "first attempts refused")
    assert [(slot._attempts, slot._retry.getTime()) for slot in slots] == [(1, 1.0), (1, 1.0)]
    clock.advance(0.9)
    assert [slot._attempts for slot in slots] == [1, 1]
    clock.advance(0.1)
    assert [slot._attempts for slot in slots] == [2, 2]
    yield until(lambda: all(slot._retry is not None for slot in slots), "second attempts refused")
    assert [slot._retry.getTime() for slot in slots] == [3.0, 3.0]  # 1 s, then 2 s
    redis_server.start()
    clock.advance(2.0)
    yield until(lambda: link.up, "both connections up on their third attempt")
    assert [slot._attempts for slot in slots] == [0, 0]
    yield link.stop()


@pytest_twisted.inlineCallbacks
def test_restarted_node_clears_its_earlier_life(nodes):
    """Same nodeId back before nodeTimeout (a quick restart): its old members go."""
    one = yield nodes("one")
    two = yield nodes("two")
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    two.service._loop.stop()
    yield two.link.stop()
    again = yield nodes("two")
    yield until(lambda: len(again.announced) == 1, "old members removed")
    assert (again.announced[0].left.connection_id, [m.connection_id for m in again.announced[0].remaining]) == ("bob", ["alice"])
    yield until(lambda: len(one.registry.room("r1").members) == 1, "snapshot")


@pytest_twisted.inlineCallbacks
def test_broken_link_hears_what_it_missed(nodes):
    """Redis kept its state while one node's link was down: that node's
    members hear the leaves and joins they missed; nothing is put back twice."""
    one = yield nodes("one", backoff=1.0)
    two = yield nodes("two")
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    yield until(lambda: one.registry.epoch is not None and len(one.registry.room("r1").members) == 2, "heartbeat")
    for slot in (one.link._commands, one.link._subscription):
        slot.protocol.transport.abortConnection()
    yield until(lambda: not one.link.up, "link down")
    yield two.registry.leave("r1", "bob")
    yield two.registry.join("r1", "room", member("carol"))
    yield until(lambda: one.link.up and one.announced and one.joins, "resync")
    assert [(r.rid, r.left.connection_id, [m.connection_id for m in r.remaining]) for r in one.announced] == [
        ("r1", "bob", ["alice"])
    ]
    assert one.joins == [("r1", "carol", ["alice"])]
    assert [m.connection_id for m in one.registry.room("r1").members] == ["alice", "carol"]
    assert two.joins == [] and two.announced == []


@pytest_twisted.inlineCallbacks
def test_node_swept_while_away_comes_back_with_joined(nodes):
    """A link down longer than nodeTimeout: the others were told its members
    left; once back, its members are in their rooms again and the others hear
    that they joined."""
    one = yield nodes("one", node_timeout=0.5, backoff=2.0)
    two = yield nodes("two", node_timeout=0.5)
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    yield until(lambda: one.registry.epoch is not None and len(one.registry.room("r1").members) == 2, "heartbeat")
    for slot in (one.link._commands, one.link._subscription):
        slot.protocol.transport.abortConnection()
    yield until(lambda: two.announced, "swept")
    assert [(r.left.connection_id, [m.connection_id for m in r.remaining]) for r in two.announced] == [("alice", ["bob"])]
    yield until(lambda: one.link.up and one.joins, "back")
    assert one.joins == [("r1", "alice", ["bob"])]
    yield until(lambda: len(two.registry.room("r1").members) == 2, "snapshot")


@pytest_twisted.inlineCallbacks
def test_who_left_while_redis_was_away_is_announced_after_an_empty_restart(nodes, redis_server):
    """Redis comes back with nothing to remove: the leave is announced from
    the rooms this node kept, to its members and to the other nodes'."""
    one = yield nodes("one")
    two = yield nodes("two")
    yield one.registry.join("#muc#m", "muc", member("alice"))
    yield one.registry.join("#muc#m", "muc", member("bob"))
    yield two.registry.join("#muc#m", "muc", member("carol"))
    yield until(lambda: len(one.registry.room("#muc#m").members) == 3, "snapshot")
    redis_server.stop()
    yield until(lambda: not one.link.up and not two.link.up, "links down")
    assert (yield one.registry.leave_all("bob")) == []
    redis_server.start()
    # To Alice at once; to Carol once node two listens on its channel again.
    yield until(lambda: len(one.announced) == 2, "bob announced")
    assert sorted((r.rid, r.left.connection_id, [m.connection_id for m in r.remaining]) for r in one.announced) == [
        ("#muc#m", "bob", ["alice"]), ("#muc#m", "bob", ["carol"])
    ]
    yield until(lambda: two.link.up and len(json.loads(redis_server_get(redis_server, "jsongle:room:#muc#m"))["m"]) == 2,
                "alice and carol back")
    assert sorted(m.connection_id for m in one.registry.room("#muc#m").members) in (["alice"], ["alice", "carol"])
    assert two.announced == []


@pytest_twisted.inlineCallbacks
def test_swept_member_goes_back_only_where_the_caps_allow(nodes, redis_server):
    """The seat was taken while this node was swept: its member is out and
    hears so about itself; the room keeps its cap."""
    one = yield nodes("one", node_timeout=0.5, backoff=2.0)
    two = yield nodes("two", node_timeout=0.5)
    yield one.registry.join("r1", "room", member("alice"))
    yield two.registry.join("r1", "room", member("bob"))
    yield until(lambda: one.registry.epoch is not None and len(one.registry.room("r1").members) == 2, "heartbeat")
    for slot in (one.link._commands, one.link._subscription):
        slot.protocol.transport.abortConnection()
    yield until(lambda: two.announced, "swept")
    yield two.registry.join("r1", "room", member("carol"))
    yield until(lambda: one.link.up and one.announced, "back")
    assert [(r.rid, r.left.connection_id, [m.connection_id for m in r.remaining]) for r in one.announced] == [
        ("r1", "alice", ["alice"])
    ]
    assert one.joins == [] and one.registry.room("r1") is None
    assert [m[0] for m in json.loads(redis_server_get(redis_server, "jsongle:room:r1"))["m"]] == ["bob", "carol"]
