"""The JSONgle application against recorded fake connections and a Clock.

SignalingApplication with the built-in handlers, the in-memory room registry
and metrics on a private CollectorRegistry: the business counters, exact
dates, and what a failing handler does to its sender and to everyone else.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Optional

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jsongle.config import Config
from jsongle.interfaces import IActionHandler, IHandlerRequest, IMessageBus
from jsongle.metrics import Metrics
from jsongle.signaling import errors
from jsongle.signaling.builtin import builtin_actions, builtin_queries
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.rooms import RoomMember
from tests.support.fakes import FakeConnection, Parts, RecordingBus

SERVER_ID = "jsongle-server"
START = 1795514400.25  # 2026-11-24T10:00:00.250Z
START_DATE = "2026-11-24T10:00:00.250Z"


class Server:
    """A SignalingApplication wired with explicit parts, and helpers to drive it."""

    def __init__(self, config: Config = Config(), handlers: Optional[HandlerSet] = None, bus: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.handlers = handlers or HandlerSet(builtin_queries(), builtin_actions())
        self.parts = Parts(config, self.clock, self.handlers, SERVER_ID, bus)
        self.metrics = self.parts.metrics
        self.rooms = self.parts.rooms
        self.app = self.parts.app
        self._ids = itertools.count(1)

    def connect(self, uid: str) -> FakeConnection:
        connection = FakeConnection(f"sid-{uid}-{next(self._ids)}")
        self.app.connect(connection, {})
        hello = connection.take_one()["jsongle"]
        self.send(connection, SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": hello["transaction"], "description": {"uid": uid}})
        assert connection.take_one()["jsongle"]["status"] == "success"
        return connection

    def send(self, connection: FakeConnection, to: Any, jsongle: Any) -> dict[str, Any]:
        message = {"id": f"m{next(self._ids)}", "from": connection.sid, "to": to, "jsongle": jsongle}
        self.app.event(connection, "jsongle", [message], None)
        return message

    def join(self, connection: FakeConnection, rid: str, query: str = "session-join") -> dict[str, Any]:
        """The iq answer (other messages received so far are dropped)."""
        connection.take()
        self.send(connection, SERVER_ID, {"action": "iq-set", "query": query, "transaction": "t", "description": {"rid": rid}})
        return connection.take_one()["jsongle"]

    def leave(self, connection: FakeConnection, rid: str) -> dict[str, Any]:
        return self.join(connection, rid, "session-leave")

    def value(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


def pair(server: Server, rid: str = "r1", query: str = "session-join") -> tuple[FakeConnection, FakeConnection]:
    alice, bob = server.connect("alice"), server.connect("bob")
    assert server.join(alice, rid, query)["action"] == "iq-result"
    assert server.join(bob, rid, query)["action"] == "iq-result"
    alice.take()  # joined
    return alice, bob


# -- business metrics ------------------------------------------------------


def test_users():
    server = Server()
    alice, bob = server.connect("alice"), server.connect("bob")
    assert server.value("users_count") == 2
    assert server.value("users_total") == 2
    server.clock.advance(90)
    server.app.disconnect(alice, "transport close")
    assert server.value("users_count") == 1
    assert server.value("users_total") == 2
    assert server.value("duration_total") == 1.5
    server.app.disconnect(alice, "transport close")  # twice counts once
    assert server.value("users_count") == 1


def test_conferences():
    server = Server()
    alice, bob = server.connect("alice"), server.connect("bob")
    server.join(alice, "r1")
    assert (server.value("conferences_count"), server.value("conferences_total")) == (1, 1)
    server.join(bob, "r1")
    server.join(bob, "r1")  # already there
    assert (server.value("conferences_count"), server.value("conferences_total")) == (1, 1)
    server.join(alice, "#muc#m1", "muc-join")
    assert (server.value("conferences_count"), server.value("conferences_total")) == (2, 2)
    server.leave(bob, "r1")
    assert server.value("conferences_count") == 2
    server.app.disconnect(alice, "transport close")  # empties both rooms
    assert (server.value("conferences_count"), server.value("conferences_total")) == (0, 2)
    server.join(bob, "r1")
    assert (server.value("conferences_count"), server.value("conferences_total")) == (1, 3)


def test_p2p_calls():
    server = Server()
    alice, bob = pair(server)
    server.send(bob, "r1", {"action": "session-accept", "sid": "c1", "description": {}})
    assert server.value("p2p_total") == 1
    assert alice.take_one()["jsongle"]["action"] == "session-accept"
    # Alone in the room: unreachable, not counted.
    server.leave(bob, "r1")
    alice.take()
    server.send(alice, "r1", {"action": "session-accept", "sid": "c2", "description": {}})
    assert alice.take_one()["jsongle"]["reason"] == "unreachable"
    assert server.value("p2p_total") == 1


def test_p2p_failed_and_duration():
    server = Server()
    alice, bob = pair(server)
    for description in (
        {"error": "ice-failed", "duration": 12.5},
        {"error": "other"},
        {"duration": 3},
        {"duration": "7"},
        {"duration": True},
        {"duration": -4},
    ):
        server.send(alice, "r1", {"action": "session-metrics", "description": description})
    server.send(alice, SERVER_ID, {"action": "session-metrics", "description": {"error": "ice-failed"}})
    server.send(alice, "r1", {"action": "session-metrics"})
    assert server.value("p2p_failed_total") == 2
    assert server.value("p2p_duration_total") == 15.5
    # Never relayed, never answered.
    assert alice.take() == [] and bob.take() == []


def test_messages_and_reactions():
    server = Server()
    alice, bob = pair(server, "#muc#m1", "muc-join")
    server.send(alice, "#muc#m1", {"action": "session-text", "namespace": "muc", "description": {"content": "hi"}})
    server.send(alice, "#muc#m1", {"action": "session-text", "namespace": "room", "description": {"content": "hi"}})
    server.send(alice, "#muc#m1", {"action": "session-custom", "namespace": "muc", "description": {}})
    assert server.value("messages_total") == 1
    server.send(bob, "#muc#m1", {"action": "session-event", "namespace": "muc", "event": "reaction", "description": {}})
    server.send(bob, "#muc#m1", {"action": "session-event", "namespace": "room", "event": "reaction", "description": {}})
    server.send(bob, "#muc#m1", {"action": "session-event", "namespace": "muc", "event": "typing", "description": {}})
    assert server.value("reactions_total") == 1
    assert [m["jsongle"]["action"] for m in bob.take()] == ["session-text", "session-text", "session-custom"]
    assert len(alice.take()) == 3 + 3  # three acks, three relays


# -- dates come from the injected clock ------------------------------------


def test_dates_come_from_the_clock():
    server = Server()
    alice, bob = pair(server)
    server.clock.advance(1.5)
    message = server.send(alice, "r1", {"action": "session-text", "namespace": "room", "description": {"content": "hi"}})
    assert bob.take_one() == {
        "id": message["id"],
        "from": "r1",
        "to": bob.sid,
        "jsongle": {
            "action": "session-text",
            "namespace": "room",
            "description": {"content": "hi", "sent": "2026-11-24T10:00:01.750Z", "relayed": "2026-11-24T10:00:01.750Z"},
        },
    }
    ack = alice.take_one()
    assert ack["jsongle"] == {
        "action": "session-event",
        "namespace": "room",
        "event": "ack",
        "description": {"acknowledged": "2026-11-24T10:00:01.750Z", "mid": message["id"], "type": "server-received"},
    }


def test_hello_date():
    server = Server()
    connection = FakeConnection("sid-x")
    server.app.connect(connection, {})
    assert connection.take_one()["jsongle"]["description"]["connected"] == START_DATE


# -- caps ------------------------------------------------------------------


def test_muc_cap_counts_rooms_not_devices():
    """One user on two devices in one MUC room is in one room."""
    server = Server(Config(max_multi_room_per_user=1))
    phone, laptop = server.connect("alice"), server.connect("alice")
    assert server.join(phone, "#muc#m1", "muc-join")["action"] == "iq-result"
    assert server.join(laptop, "#muc#m1", "muc-join")["action"] == "iq-result"
    phone.take()  # joined
    refused = server.join(laptop, "#muc#m2", "muc-join")
    assert refused["description"] == {"errorCode": 403003, "errorDetails": "Max number of multi rooms per user already reached"}
    # One device leaving keeps the room counted; both leaving frees it.
    server.leave(phone, "#muc#m1")
    assert server.join(phone, "#muc#m2", "muc-join")["action"] == "iq-error"
    server.leave(laptop, "#muc#m1")
    assert server.join(phone, "#muc#m2", "muc-join")["action"] == "iq-result"


# -- failing handlers ------------------------------------------------------


@implementer(IActionHandler)
class Failing:
    """An action handler that fails: at once, or a second later (request.clock)."""

    call = False

    def __init__(self, action: str, error: Exception, later: bool = False) -> None:
        self.action = action
        self.error = error
        self.later = later

    def handle(self, request: Any) -> Optional[Deferred]:
        if not self.later:
            raise self.error
        result: Deferred = Deferred()
        request.clock.callLater(1, result.errback, self.error)
        return result


@implementer(IActionHandler)
class Ringing:
    """A plugin call action: alone in a P2P room the sender hears 'unreachable'."""

    action = "session-ring"
    call = True

    def handle(self, request: Any) -> None:
        request.relay(request.message)


@implementer(IActionHandler)
class Probe:
    """Keeps the requests it is given."""

    action = "session-probe"
    call = False

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def handle(self, request: Any) -> None:
        self.requests.append(request)


def failing_server() -> Server:
    extra = [
        Failing("session-boom", RuntimeError("boom")),
        Failing("session-later", ValueError("later"), later=True),
        Failing("session-refused", JsongleError(errors.ACTION_NOT_ALLOWED, "not today")),
        Ringing(),
    ]
    return Server(handlers=HandlerSet(builtin_queries(), builtin_actions() + extra))


@pytest.mark.parametrize("action", ["session-boom", "session-later"])
def test_failing_handler_answers_internal_error(action):
    server = failing_server()
    alice, bob = pair(server, "r1")
    carol, dave = server.connect("carol"), server.connect("dave")
    server.join(carol, "r2")
    server.join(dave, "r2")
    carol.take()
    server.send(alice, "r1", {"action": action, "description": {}})
    server.clock.advance(1)
    error = alice.take_one()
    assert error["from"] == SERVER_ID and error["to"] == alice.sid
    assert error["jsongle"] == {"action": "session-error", "description": {"errorCode": 500001, "errorDetails": "internal error"}}
    assert bob.take() == []
    # Everyone else, and Alice herself, carry on.
    message = server.send(carol, "r2", {"action": "session-info", "sid": "c1", "description": {}})
    assert dave.take_one()["id"] == message["id"]
    message = server.send(alice, "r1", {"action": "session-info", "sid": "c1", "description": {}})
    assert bob.take_one()["id"] == message["id"]


def test_handler_raising_jsongle_error():
    server = failing_server()
    alice, bob = pair(server)
    server.send(alice, "r1", {"action": "session-refused"})
    assert alice.take_one()["jsongle"]["description"] == {"errorCode": 405001, "errorDetails": "not today"}


def test_call_attribute_of_a_plugin_action():
    server = failing_server()
    alice = server.connect("alice")
    server.join(alice, "r1")
    server.send(alice, "r1", {"action": "session-ring", "sid": "c1", "initiator": "a", "responder": "b"})
    assert alice.take_one()["jsongle"] == {
        "sid": "c1",
        "action": "session-info",
        "reason": "unreachable",
        "initiator": "a",
        "responder": "b",
        "description": {"ended": START_DATE},
    }
    server.send(alice, "r1", {"action": "session-boom"})  # call = False
    assert alice.take_one()["jsongle"]["description"]["errorCode"] == 404003


def test_handler_request_provides_its_interface():
    probe = Probe()
    server = Server(handlers=HandlerSet(builtin_queries(), builtin_actions() + [probe]))
    alice, bob = pair(server)
    server.send(alice, "r1", {"action": "session-probe"})
    message = {"id": "p1", "from": "spoofed", "to": SERVER_ID, "jsongle": {"action": "session-probe"}}
    server.app.event(alice, "jsongle", [message], None)
    in_room, to_server = probe.requests
    for request in (in_room, to_server):
        assert verifyObject(IHandlerRequest, request)
        assert request.member.uid == "alice" and request.server_id == SERVER_ID
        assert request.now() == START_DATE
    assert in_room.room.rid == "r1" and [m.uid for m in in_room.room.members] == ["alice", "bob"]
    assert in_room.reply_to == alice.sid
    assert to_server.room is None and to_server.reply_to == "spoofed"
    assert to_server.relay(message) == 0
    assert alice.take() == [] and bob.take() == []


# -- members on other nodes ----------------------------------------------------


def test_copies_for_other_nodes_go_through_the_bus() -> None:
    server = Server(bus=lambda calls: RecordingBus(calls.from_other_node))
    bus = server.parts.bus
    verifyObject(IMessageBus, bus)
    alice = server.connect("alice")
    server.join(alice, "#muc#m", "muc-join")
    remote = RoomMember("sid-far", "bob", {"uid": "bob"}, "there")
    server.rooms.join("#muc#m", "muc", remote)
    message = server.send(alice, "#muc#m", {"action": "session-custom", "namespace": "muc", "description": {"x": 1}})
    (node, connection_id, copy), = bus.carried
    assert (node, connection_id) == ("there", "sid-far")
    assert (copy["id"], copy["from"], copy["to"]) == (message["id"], "#muc#m/alice", "sid-far")
    assert alice.take_one()["jsongle"]["event"] == "ack"
    # Leaving is announced to the remote member through the bus too.
    bus.carried.clear()
    assert server.leave(alice, "#muc#m")["action"] == "iq-result"
    (node, connection_id, left), = bus.carried
    assert (node, connection_id, left["jsongle"]["event"]) == ("there", "sid-far", "left")
    # What another node sends to a local connection is emitted to it; to a gone one, dropped.
    bus.deliver(alice.sid, {"hello": "from there"})
    bus.deliver("sid-gone", {"hello": "nobody"})
    assert alice.take() == [{"hello": "from there"}]


# -- what orjson cannot encode is still relayed ------------------------------


def test_text_without_utf8_form_and_huge_integers_are_relayed_intact():
    """A lone surrogate (valid in JSON, not in UTF-8) and a 70-bit integer come out as they went in."""
    server = Server()
    alice, bob = pair(server)
    description = {"content": "half \ud800 a pair, é", "count": 2**70}
    server.send(alice, "r1", {"action": "session-text", "namespace": "room", "description": description})
    (relayed,) = bob.take()
    assert {key: relayed["jsongle"]["description"][key] for key in description} == description
    assert relayed["to"] == bob.sid and relayed["from"] == "r1"


# -- member data, texts as the Node.js server writes them ---------------------


def hello(server: Server, description: Any) -> tuple[FakeConnection, list[dict[str, Any]]]:
    connection = FakeConnection(f"sid-{next(server._ids)}")
    server.app.connect(connection, {})
    transaction = connection.take_one()["jsongle"]["transaction"]
    server.send(connection, SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": transaction, "description": description})
    return connection, connection.take()


def test_members_are_shown_as_their_hello_description():
    """joined, left and members carry every field the client put in its hello (PROTOCOL §3.5)."""
    server = Server()
    alice_data = {"uid": "alice", "dn": "Alice", "avatar": "/a.png", "extra": {"team": "blue", "tags": [1, 2]}}
    bob_data = {"uid": "bob", "avatar": "/b.png"}
    alice, answers = hello(server, alice_data)
    assert answers[0]["jsongle"]["status"] == "success"
    bob, _ = hello(server, bob_data)
    assert server.join(alice, "r1") == {"action": "iq-result", "query": "session-join", "transaction": "t", "description": {"members": [], "rid": "r1"}}
    assert server.join(bob, "r1")["description"]["members"] == [alice_data]
    (joined,) = alice.take()
    assert joined["jsongle"]["description"] == {"member": bob_data, "rid": "r1"}
    server.leave(bob, "r1")
    (left,) = alice.take()
    assert left["jsongle"]["description"] == {"member": bob_data, "rid": "r1"}


def test_a_description_over_max_member_data_bytes_is_refused():
    server = Server(Config(max_member_data_bytes=100))
    _, answers = hello(server, {"uid": "alice", "avatar": "x" * 100})
    assert [a["jsongle"]["action"] for a in answers] == ["ack", "session-error"]
    assert answers[0]["jsongle"]["status"] == "failed"
    assert answers[1]["jsongle"]["description"]["errorCode"] == errors.BAD_PARAMETERS
    assert answers[1]["jsongle"]["description"]["errorDetails"].startswith("Invalid 'description' parameter: is larger than 100 bytes")
    _, answers = hello(server, "alice")  # not an object
    assert [a["jsongle"].get("status") for a in answers] == ["failed", None]
    assert answers[1]["jsongle"]["description"]["errorCode"] == errors.BAD_PARAMETERS


@pytest.mark.parametrize(
    "jsongle, to, details",
    [
        ({"namespace": "room"}, "r1", "Message of type undefined is not supported"),
        ({"action": None}, "r1", "Message of type null is not supported"),
        ({"action": 5}, "r1", "Message of type 5 is not supported"),
        ({"action": 2.0}, "r1", "Message of type 2 is not supported"),
        ({"action": True}, "r1", "Message of type true is not supported"),
        ({"action": {"a": 1}}, "r1", "Message of type [object Object] is not supported"),
        ({"action": ["a", None, 1]}, "r1", "Message of type a,,1 is not supported"),
        ({"action": "session-text"}, None, "Can't call - not in room undefined"),
    ],
)
def test_error_texts_never_show_python_values(jsongle, to, details):
    server = Server()
    alice, _ = pair(server)
    alice.take()
    message = {"id": "m", "from": alice.sid, "jsongle": jsongle}
    if to is not None:
        message["to"] = to
    server.app.event(alice, "jsongle", [message], None)
    assert alice.take_one()["jsongle"]["description"]["errorDetails"] == details


def test_unknown_query_texts():
    server = Server()
    alice = server.connect("alice")
    server.send(alice, SERVER_ID, {"action": "iq-set", "transaction": "t"})
    assert alice.take_one()["jsongle"]["description"]["errorDetails"] == "The query 'undefined' is not supported"


def test_the_ack_of_a_message_without_id_has_no_mid():
    server = Server()
    alice, bob = pair(server)
    alice.take()
    server.app.event(alice, "jsongle", [{"from": alice.sid, "to": "r1", "jsongle": {"action": "session-text", "namespace": "room"}}], None)
    (ack,) = alice.take()
    assert ack["jsongle"]["description"].keys() == {"acknowledged", "type"}


# -- calls in progress ---------------------------------------------------------


def test_p2p_count_follows_accept_terminate_and_leaving():
    server = Server()
    alice, bob = pair(server)
    assert server.value("p2p_count") == 0
    server.send(bob, "r1", {"action": "session-accept", "sid": "c1", "namespace": "call"})
    assert server.value("p2p_count") == 1
    server.send(bob, "r1", {"action": "session-accept", "sid": "c1", "namespace": "call"})  # counted once
    assert server.value("p2p_count") == 1
    server.send(alice, "r1", {"action": "session-terminate", "sid": "c1", "namespace": "call"})
    assert server.value("p2p_count") == 0
    server.send(alice, "r1", {"action": "session-terminate", "sid": "c1", "namespace": "call"})  # ended once
    assert server.value("p2p_count") == 0
    # A member dropping mid-call ends it.
    server.send(bob, "r1", {"action": "session-accept", "sid": "c2"})
    assert server.value("p2p_count") == 1
    server.app.disconnect(alice, "transport close")
    assert server.value("p2p_count") == 0
    assert server.value("jsongle_conference_calls") == 0


def test_conference_calls_are_counted_apart():
    server = Server()
    alice, bob = pair(server, "#muc#m", "muc-join")
    server.send(bob, "#muc#m", {"action": "session-accept", "sid": "c1", "namespace": "muc"})
    assert (server.value("jsongle_conference_calls"), server.value("p2p_count")) == (1, 0)
    server.leave(bob, "#muc#m")
    assert server.value("jsongle_conference_calls") == 0


def test_a_terminate_or_left_from_another_node_ends_a_call_counted_here():
    server = Server(bus=lambda calls: RecordingBus(calls.from_other_node))
    bus = server.parts.bus
    alice = server.connect("alice")
    server.join(alice, "#muc#m/x", "muc-join")
    server.rooms.join("#muc#m/x", "muc", RoomMember("sid-far", "bob/1", {"uid": "bob/1"}, "there"))
    server.send(alice, "#muc#m/x", {"action": "session-accept", "sid": "c1", "namespace": "muc"})
    assert server.value("jsongle_conference_calls") == 1
    alice.take()
    bus.deliver(alice.sid, {"from": "#muc#m/x/bob/1", "to": alice.sid, "jsongle": {"action": "session-terminate", "sid": "c1"}})
    assert server.value("jsongle_conference_calls") == 0
    assert alice.take_one()["jsongle"]["action"] == "session-terminate"
    server.send(alice, "#muc#m/x", {"action": "session-accept", "sid": "c2", "namespace": "muc"})
    assert server.value("jsongle_conference_calls") == 1
    bus.deliver(alice.sid, {"jsongle": {"action": "session-event", "event": "left", "description": {"member": {"uid": "bob/1"}, "rid": "#muc#m/x"}}})
    assert server.value("jsongle_conference_calls") == 0


# -- one member of a room: to = <rid>/<uid> (PROTOCOL §13) -------------------


def muc_of_three(server: Server, rid: str = "#muc#m") -> tuple[FakeConnection, FakeConnection, FakeConnection]:
    members = tuple(server.connect(uid) for uid in ("alice", "bob", "carol"))
    for member in members:
        assert server.join(member, rid, "muc-join")["action"] == "iq-result"
    for member in members:
        member.take()
    return members  # type: ignore[return-value]


def test_a_message_to_one_member_reaches_only_it():
    server = Server()
    alice, bob, carol = muc_of_three(server)
    message = server.send(alice, "#muc#m/carol", {"action": "session-propose", "sid": "c1", "namespace": "muc", "description": {}})
    (copy,) = carol.take()
    assert (copy["id"], copy["from"], copy["to"]) == (message["id"], "#muc#m/alice", carol.sid)
    assert copy["jsongle"]["namespace"] == "muc"
    assert bob.take() == []
    assert alice.take_one()["jsongle"]["reason"] == "trying"
    # Any namespace keeps itself; from is still <rid>/<sender>.
    server.send(bob, "#muc#m/alice", {"action": "session-text", "namespace": "call", "description": {"content": "hi"}})
    (copy,) = alice.take()
    assert (copy["from"], copy["jsongle"]["namespace"]) == ("#muc#m/bob", "call")
    assert carol.take() == [] and bob.take_one()["jsongle"]["event"] == "ack"


def test_absent_member_outsider_and_ids_with_slashes():
    server = Server()
    alice, bob, carol = muc_of_three(server, "#muc#a/b")
    server.send(alice, "#muc#a/b/dave", {"action": "session-propose", "sid": "c1"})
    answer = alice.take_one()["jsongle"]
    assert (answer["action"], answer["reason"]) == ("session-info", "unreachable")
    server.send(alice, "#muc#a/b/dave", {"action": "session-text", "namespace": "muc"})
    assert alice.take_one()["jsongle"]["description"] == {"errorCode": 404003, "errorDetails": "Can't transmit message - dave is not in room #muc#a/b"}
    server.send(alice, "#muc#a/b/alice", {"action": "session-text", "namespace": "muc"})  # only itself: nobody
    assert alice.take_one()["jsongle"]["description"]["errorCode"] == 404003
    outsider = server.connect("eve")
    server.send(outsider, "#muc#a/b/bob", {"action": "session-text", "namespace": "muc"})
    assert outsider.take_one()["jsongle"]["description"] == {"errorCode": 404002, "errorDetails": "Can't call - not in room #muc#a/b/bob"}
    # A uid holding '/' after a rid holding '/'.
    weird = server.connect("x/y")
    server.join(weird, "#muc#a/b", "muc-join")
    for member in (alice, bob, carol):
        member.take()
    server.send(alice, "#muc#a/b/x/y", {"action": "session-custom", "namespace": "muc"})
    assert [m["to"] for m in weird.take()] == [weird.sid]
    assert bob.take() == [] and carol.take() == []


def test_a_uid_connected_twice_gets_it_on_each_connection():
    server = Server()
    alice, bob, carol = muc_of_three(server)
    bob2 = server.connect("bob")
    server.join(bob2, "#muc#m", "muc-join")
    for member in (alice, bob, carol):
        member.take()
    server.send(alice, "#muc#m/bob", {"action": "transport-info", "sid": "c1"})
    assert [m["to"] for m in bob.take() + bob2.take()] == [bob.sid, bob2.sid]
    assert carol.take() == []


def test_mesh_calls_are_conference_calls():
    server = Server()
    alice, bob, carol = muc_of_three(server)
    server.send(carol, "#muc#m/alice", {"action": "session-accept", "sid": "ac"})
    server.send(bob, "#muc#m/alice", {"action": "session-accept", "sid": "ab"})
    assert (server.value("jsongle_conference_calls"), server.value("p2p_count")) == (2, 0)
    server.send(alice, "#muc#m/bob", {"action": "session-terminate", "sid": "ab"})
    assert server.value("jsongle_conference_calls") == 1
    server.app.disconnect(carol, "transport close")
    assert server.value("jsongle_conference_calls") == 0


def test_member_addressing_in_a_p2p_room():
    server = Server()
    alice, bob = pair(server)
    alice.take()
    server.send(alice, "r1/bob", {"action": "session-accept", "sid": "c1"})
    (copy,) = bob.take()
    assert copy["from"] == "r1/alice"
    assert server.value("p2p_count") == 1
