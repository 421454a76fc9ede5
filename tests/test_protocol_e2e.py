"""The JSONgle protocol end to end: session start, server queries, messages
to rooms and error codes, as a stock socket.io-client sees them.

Each test drives the real daemon with socket.io-client (through the Node
puppet, default transports: long-polling, then the upgrade to WebSocket) and
compares every message a client receives as a whole; only ids (``UUID``) and
dates (``DATE``) are matched by pattern.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

from tests.support.protocol import CALL_ACTIONS as PROTOCOL_CALL_ACTIONS

from jsongle import DESCRIPTION, __version__

TOKEN = "test-token"  # the harness's default appToken
SERVER_ID = "jsongle-server"
MUC_PREFIX = "#muc#"

CALL_ACTIONS = list(PROTOCOL_CALL_ACTIONS)
# Relayed with description.sent/relayed dates (session-propose is relayed as is).
STAMPED_ACTIONS = [action for action in CALL_ACTIONS if action != "session-propose"] + [
    "session-event",
    "session-text",
    "session-custom",
]


class Matches:
    """Equal to any string matching *pattern* (for ids and dates)."""

    def __init__(self, label: str, pattern: str) -> None:
        self.label = label
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.match(other) is not None

    def __repr__(self) -> str:
        return self.label


UUID = Matches("<uuid>", r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATE = Matches("<date>", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- clients ---------------------------------------------------------------


@dataclass
class Client:
    """One socket.io-client socket of the puppet, known by its socket id."""

    puppet: Any
    name: str
    sid: str
    uid: Optional[str] = None
    hello: Optional[dict[str, Any]] = None
    #: Every JSONgle message sent and received, in order (traffic accounting).
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identity(self) -> dict[str, str]:
        assert self.uid is not None
        return {"uid": self.uid, "dn": self.uid.title()}

    def send(self, to: Any, jsongle: Any, **envelope: Any) -> dict[str, Any]:
        """Emit a JSONgle message (``from`` = own socket id unless given)."""
        message = {"id": str(uuid.uuid4()), "from": self.sid, "to": to, "jsongle": jsongle, **envelope}
        self.puppet.emit(self.name, "jsongle", message)
        self.sent.append(message)
        return message

    def emit(self, *args: Any) -> None:
        """Emit the ``jsongle`` event with arbitrary arguments."""
        self.puppet.emit(self.name, "jsongle", *args)

    def iq_set(self, query: str, description: Any = None, **jsongle: Any) -> dict[str, Any]:
        body = {"action": "iq-set", "query": query, "transaction": str(uuid.uuid4()), **jsongle}
        if description is not None:
            body["description"] = description
        return self.send(SERVER_ID, body)

    def receive(self) -> dict[str, Any]:
        """The next JSONgle message this client receives, in arrival order."""
        message = self.puppet.next_jsongle(self.name)
        self.received.append(message)
        return message


def assert_quiet(*clients: Client) -> None:
    """Nothing more arrives for any of *clients* within one short window
    (the harness's assert_quiet, the only fixed wait: it proves an absence)."""
    first, *others = clients
    first.puppet.assert_quiet(first.name, "event")
    for client in others:
        assert [line for line in client.puppet.pending(client.name) if line.get("type") == "event"] == []


def connect(puppet: Any, daemon: Any, name: str, uid: Optional[str] = None) -> Client:
    """Connect with the daemon's token, take the session-hello and, when *uid*
    is given, answer it and check the success ack."""
    puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False)
    client = Client(puppet, name, puppet.next(name, "connect")["id"])
    hello = client.receive()
    assert hello == {
        "id": UUID,
        "from": SERVER_ID,
        "to": client.sid,
        "jsongle": {
            "action": "iq-get",
            "query": "session-hello",
            "transaction": UUID,
            "description": {"version": __version__, "sn": SERVER_ID, "info": DESCRIPTION, "connected": DATE},
        },
    }
    client.hello = hello
    if uid is not None:
        client.uid = uid
        transaction = hello["jsongle"]["transaction"]
        answer_hello(client, hello, {"uid": uid, "dn": uid.title()})
        assert client.receive() == {
            "id": UUID,
            "from": SERVER_ID,
            "to": client.sid,
            "jsongle": {"action": "ack", "status": "success", "transaction": transaction},
        }
    return client


def answer_hello(client: Client, hello: dict[str, Any], description: dict[str, Any]) -> None:
    """The client's iq-result to the session-hello."""
    jsongle = {"action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"]}
    client.send(SERVER_ID, {**jsongle, "description": description})


def join(client: Client, rid: str, query: str = "session-join", members: tuple[Client, ...] = ()) -> None:
    """Join *rid* and check the iq-result lists exactly *members*."""
    request = client.iq_set(query, {"rid": rid})
    assert client.receive() == iq_result(request, {"members": [m.identity for m in members], "rid": rid})


def joined_room(puppet: Any, daemon: Any, rid: str, kind: str = "session-join") -> tuple[Client, Client]:
    """Alice and Bob in *rid*; Alice's ``joined`` event is consumed."""
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    join(alice, rid, kind)
    join(bob, rid, kind, members=(alice,))
    namespace = "muc" if kind == "muc-join" else "room"
    assert alice.receive() == event(alice, namespace, "joined", {"member": bob.identity, "rid": rid})
    return alice, bob


# -- expected messages -----------------------------------------------------


def iq_answer(request: dict[str, Any], action: str, description: Any) -> dict[str, Any]:
    jsongle = request["jsongle"]
    return {
        "id": UUID,
        "from": SERVER_ID,
        "to": request["from"],
        "jsongle": {"action": action, "query": jsongle["query"], "transaction": jsongle["transaction"], "description": description},
    }


def iq_result(request: dict[str, Any], description: Any) -> dict[str, Any]:
    return iq_answer(request, "iq-result", description)


def iq_error(request: dict[str, Any], code: int, details: str) -> dict[str, Any]:
    return iq_answer(request, "iq-error", {"errorCode": code, "errorDetails": details})


def session_error(to: str, code: int, details: str) -> dict[str, Any]:
    return {
        "id": UUID,
        "from": SERVER_ID,
        "to": to,
        "jsongle": {"action": "session-error", "description": {"errorCode": code, "errorDetails": details}},
    }


def event(client: Client, namespace: Any, name: str, description: Any, to: Optional[str] = None) -> dict[str, Any]:
    return {
        "id": UUID,
        "from": SERVER_ID,
        "to": to or client.sid,
        "jsongle": {"action": "session-event", "namespace": namespace, "event": name, "description": description},
    }


def session_info(to: str, call: dict[str, Any], reason: str, description: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": UUID,
        "from": SERVER_ID,
        "to": to,
        "jsongle": {
            "sid": call["sid"],
            "action": "session-info",
            "reason": reason,
            "initiator": call["initiator"],
            "responder": call["responder"],
            "description": description,
        },
    }


def relayed(message: dict[str, Any], origin: str, target: Client, description: Any) -> dict[str, Any]:
    """*message* as *target* receives it: same id, from the room, to its socket."""
    return {**message, "from": origin, "to": target.sid, "jsongle": {**message["jsongle"], "description": description}}


def call(action: str, **jsongle: Any) -> dict[str, Any]:
    return {
        "sid": "call-1",
        "action": action,
        "initiator": "alice",
        "responder": "bob",
        "description": {"sdp": "v=0"},
        **jsongle,
    }


# -- §3 session start ------------------------------------------------------


def test_hello(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice")  # checks the session-hello
    assert puppet.next("alice", "upgrade")["transport"] == "websocket"
    transaction = alice.hello["jsongle"]["transaction"]
    answer_hello(alice, alice.hello, {"uid": "alice", "dn": "Alice"})
    assert alice.receive() == {
        "id": UUID,
        "from": SERVER_ID,
        "to": alice.sid,
        "jsongle": {"action": "ack", "status": "success", "transaction": transaction},
    }
    alice.uid = "alice"
    join(alice, "r1")


def test_hello_without_uid(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice")
    transaction = alice.hello["jsongle"]["transaction"]
    answer_hello(alice, alice.hello, {"dn": "Nobody"})
    assert alice.receive() == {
        "id": UUID,
        "from": SERVER_ID,
        "to": alice.sid,
        "jsongle": {"action": "ack", "status": "failed", "transaction": transaction},
    }
    assert alice.receive() == session_error(alice.sid, 400001, "Missing 'uid' parameter")
    for description in ({"uid": ""}, {"uid": 42}, None):
        jsongle = {"action": "iq-result", "query": "session-hello", "transaction": transaction}
        alice.send(SERVER_ID, jsongle if description is None else {**jsongle, "description": description})
        assert alice.receive()["jsongle"] == {"action": "ack", "status": "failed", "transaction": transaction}
        assert alice.receive() == session_error(alice.sid, 400001, "Missing 'uid' parameter")
    # Still not registered.
    alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive() == session_error(alice.sid, 403002, "session-hello message was not received or was not complete")


def test_message_before_hello(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice")
    not_registered = session_error(alice.sid, 403002, "session-hello message was not received or was not complete")
    alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive() == not_registered
    alice.send("r1", {"action": "session-text", "namespace": "room", "description": {"content": "hi"}})
    assert alice.receive() == not_registered
    alice.send(SERVER_ID, {"action": "session-foo"})
    assert alice.receive() == not_registered
    # The hello still works afterwards.
    answer_hello(alice, alice.hello, {"uid": "alice"})
    assert alice.receive()["jsongle"]["status"] == "success"
    alice.uid = "alice"
    join(alice, "r1")


# -- §4 server queries -----------------------------------------------------


def test_p2p_join(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    assert alice.receive() == event(alice, "room", "joined", {"member": bob.identity, "rid": "r1"})
    assert_quiet(alice, bob)


def test_p2p_room_full(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    carol = connect(puppet, daemon, "carol", "carol")
    request = carol.iq_set("session-join", {"rid": "r1"})
    assert carol.receive() == iq_error(request, 403001, "Max number of members per room already reached")
    assert_quiet(alice, bob)


def test_leave(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    request = bob.iq_set("session-leave", {"rid": "r1"})
    assert bob.receive() == iq_result(request, {"rid": "r1"})
    assert alice.receive() == event(alice, "room", "left", {"member": bob.identity, "rid": "r1"})
    # Bob is out: his messages to the room are refused.
    bob.send("r1", call("session-info"))
    assert bob.receive() == session_error(bob.sid, 404002, "Can't call - not in room r1")


def test_leave_when_not_a_member(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    request = alice.iq_set("session-leave", {"rid": "nowhere"})
    assert alice.receive() == iq_error(request, 404002, "Not member of room nowhere")
    join(bob, "#muc#m1", "muc-join")
    request = alice.iq_set("session-leave", {"rid": "#muc#m1"})
    assert alice.receive() == iq_error(request, 404002, "Not member of multiroom #muc#m1")
    assert_quiet(bob)


@pytest.mark.parametrize("query", ["session-join", "muc-join", "session-leave"])
def test_query_without_rid(daemon_factory, puppet, query):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    for description in ({}, {"rid": ""}, {"name": "r1"}):
        request = alice.iq_set(query, description)
        assert alice.receive() == iq_error(request, 400001, "Missing 'rid' parameter")


def test_unknown_query(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    request = alice.iq_set("session-dance", {"rid": "r1"})
    assert alice.receive() == iq_error(request, 404001, "The query 'session-dance' is not supported")


def test_muc_join(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "#muc#m1", "muc-join")
    carol = connect(puppet, daemon, "carol", "carol")
    join(carol, "#muc#m1", "muc-join", members=(alice, bob))
    for member in (alice, bob):
        assert member.receive() == event(member, "muc", "joined", {"member": carol.identity, "rid": "#muc#m1"})
    request = carol.iq_set("session-leave", {"rid": "#muc#m1"})
    assert carol.receive() == iq_result(request, {"rid": "#muc#m1"})
    for member in (alice, bob):
        assert member.receive() == event(member, "muc", "left", {"member": carol.identity, "rid": "#muc#m1"})


def test_muc_full(daemon_factory, puppet):
    daemon = daemon_factory({"maxMembersPerMultiRoom": 2})
    alice, bob = joined_room(puppet, daemon, "#muc#m1", "muc-join")
    carol = connect(puppet, daemon, "carol", "carol")
    request = carol.iq_set("muc-join", {"rid": "#muc#m1"})
    assert carol.receive() == iq_error(request, 403001, "Max number of members per multi room already reached")
    assert_quiet(alice, bob)


def test_muc_rooms_per_user(daemon_factory, puppet):
    daemon = daemon_factory({"maxMultiRoomPerUser": 1})
    alice = connect(puppet, daemon, "alice", "alice")
    join(alice, "#muc#m1", "muc-join")
    request = alice.iq_set("muc-join", {"rid": "#muc#m2"})
    assert alice.receive() == iq_error(request, 403003, "Max number of multi rooms per user already reached")
    # P2P rooms do not count.
    join(alice, "r1")
    # Leaving frees the slot.
    request = alice.iq_set("session-leave", {"rid": "#muc#m1"})
    assert alice.receive() == iq_result(request, {"rid": "#muc#m1"})
    join(alice, "#muc#m2", "muc-join")


@pytest.mark.parametrize("query", ["session-join", "muc-join"])
def test_rejoin_is_idempotent(daemon_factory, puppet, query):
    daemon = daemon_factory()
    rid = "#muc#m1" if query == "muc-join" else "r1"
    alice, bob = joined_room(puppet, daemon, rid, query)
    join(bob, rid, query, members=(alice,))
    join(alice, rid, query, members=(bob,))
    assert_quiet(alice, bob)


# -- §5 messages to a room -------------------------------------------------


def test_propose_is_relayed_and_the_caller_hears_trying(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    propose = alice.send("r1", call("session-propose"))
    assert bob.receive() == relayed(propose, "r1", bob, {"sdp": "v=0"})
    assert alice.receive() == session_info(alice.sid, propose["jsongle"], "trying", {"tried": DATE})
    assert_quiet(alice, bob)


@pytest.mark.parametrize("action", [a for a in CALL_ACTIONS if a != "session-propose"])
def test_call_action_is_relayed_with_dates(daemon_factory, puppet, action):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    message = alice.send("r1", call(action))
    assert bob.receive() == relayed(message, "r1", bob, {"sdp": "v=0", "sent": DATE, "relayed": DATE})
    # Both ways; a 'sent' date set by the sender is kept.
    back = bob.send("r1", call(action, description={"sent": "2026-01-01T00:00:00.000Z"}))
    assert alice.receive() == relayed(back, "r1", alice, {"sent": "2026-01-01T00:00:00.000Z", "relayed": DATE})
    assert_quiet(alice, bob)


def test_session_event_is_relayed_with_dates(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "#muc#m1", "muc-join")
    reaction = alice.send("#muc#m1", {"action": "session-event", "namespace": "muc", "event": "reaction", "description": {"emoji": "+1"}})
    expected = {"emoji": "+1", "sent": DATE, "relayed": DATE}
    assert bob.receive() == relayed(reaction, "#muc#m1/alice", bob, expected)
    assert_quiet(alice)


@pytest.mark.parametrize("action", CALL_ACTIONS)
def test_call_action_alone_is_unreachable(daemon_factory, puppet, action):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    join(alice, "r1")
    message = alice.send("r1", call(action))
    assert alice.receive() == session_info(alice.sid, message["jsongle"], "unreachable", {"ended": DATE})
    assert_quiet(alice)


@pytest.mark.parametrize("action", ["session-text", "session-custom", "session-event", "session-metrics", "session-foo"])
def test_other_action_alone_is_refused(daemon_factory, puppet, action):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    join(alice, "r1")
    alice.send("r1", {"action": action, "namespace": "room", "description": {}})
    assert alice.receive() == session_error(alice.sid, 404003, "Can't transmit message - no other member in room r1")


@pytest.mark.parametrize("action", ["session-info", "session-text", "session-foo"])
def test_message_to_a_room_of_others(daemon_factory, puppet, action):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    carol = connect(puppet, daemon, "carol", "carol")
    carol.send("r1", call(action))
    assert carol.receive() == session_error(carol.sid, 404002, "Can't call - not in room r1")
    carol.send("nowhere", call(action))
    assert carol.receive() == session_error(carol.sid, 404002, "Can't call - not in room nowhere")
    assert_quiet(alice, bob)


def test_unknown_action(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    alice.send("r1", {"action": "session-foo", "description": {}})
    assert alice.receive() == session_error(alice.sid, 405001, "Message of type session-foo is not supported")
    alice.send(SERVER_ID, {"action": "iq-get", "query": "session-hello", "transaction": "t1"})
    assert alice.receive() == session_error(alice.sid, 405001, "Message of type iq-get is not supported")
    assert_quiet(bob)


@pytest.mark.parametrize("action", ["session-text", "session-custom"])
@pytest.mark.parametrize("kind", ["session-join", "muc-join"])
def test_text_and_custom_are_acknowledged(daemon_factory, puppet, action, kind):
    daemon = daemon_factory()
    namespace, rid = ("muc", "#muc#m1") if kind == "muc-join" else ("room", "r1")
    alice, bob = joined_room(puppet, daemon, rid, kind)
    message = alice.send(rid, {"action": action, "namespace": namespace, "description": {"content": "hi"}})
    origin = f"{rid}/alice" if namespace == "muc" else rid
    assert bob.receive() == relayed(message, origin, bob, {"content": "hi", "sent": DATE, "relayed": DATE})
    ack = {"acknowledged": DATE, "mid": message["id"], "type": "server-received"}
    assert alice.receive() == event(alice, namespace, "ack", ack)
    assert_quiet(alice, bob)


def test_muc_namespace_rewrites_from(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "#muc#m1", "muc-join")
    carol = connect(puppet, daemon, "carol", "carol")
    join(carol, "#muc#m1", "muc-join", members=(alice, bob))
    for member in (alice, bob):
        member.receive()  # joined
    message = carol.send("#muc#m1", {"action": "session-custom", "namespace": "muc", "description": {"x": 1}})
    for member in (alice, bob):
        assert member.receive() == relayed(message, "#muc#m1/carol", member, {"x": 1, "sent": DATE, "relayed": DATE})
    assert carol.receive()["jsongle"]["event"] == "ack"
    # Without namespace 'muc' the room id alone is the origin, in a MUC room too.
    message = carol.send("#muc#m1", {"action": "session-custom", "namespace": "room", "description": {"x": 2}})
    for member in (alice, bob):
        assert member.receive() == relayed(message, "#muc#m1", member, {"x": 2, "sent": DATE, "relayed": DATE})


def test_session_metrics_are_not_relayed(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    alice.send("r1", {"action": "session-metrics", "description": {"error": "ice-failed", "duration": 12}})
    alice.send(SERVER_ID, {"action": "session-metrics", "description": {"duration": 3}})
    assert_quiet(alice, bob)


def test_messages_to_the_server_are_not_relayed(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    text = alice.send(SERVER_ID, {"action": "session-text", "namespace": "room", "description": {"content": "hi"}})
    assert alice.receive() == event(alice, "room", "ack", {"acknowledged": DATE, "mid": text["id"], "type": "server-received"})
    propose = alice.send(SERVER_ID, call("session-propose"))
    assert alice.receive() == session_info(alice.sid, propose["jsongle"], "trying", {"tried": DATE})
    for action in ("session-info", "session-accept", "session-event"):
        alice.send(SERVER_ID, call(action))
    assert_quiet(alice, bob)


@pytest.mark.parametrize("action", ["session-propose", "session-info", "session-text", "session-event"])
def test_relayed_message_without_description(daemon_factory, puppet, action):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "r1")
    jsongle = {"action": action, "namespace": "room", "sid": "call-1", "initiator": "alice", "responder": "bob"}
    message = alice.send("r1", jsongle)
    description = {} if action == "session-propose" else {"sent": DATE, "relayed": DATE}
    assert bob.receive() == {**message, "from": "r1", "to": bob.sid, "jsongle": {**jsongle, "description": description}}
    if action in ("session-propose", "session-text"):
        alice.receive()  # trying / ack
    assert_quiet(alice)
    # The server is still up and the room still works.
    message = bob.send("r1", call("session-info"))
    assert alice.receive() == relayed(message, "r1", alice, {"sdp": "v=0", "sent": DATE, "relayed": DATE})


def test_from_is_echoed_never_used_for_routing(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "#muc#m1", "muc-join")
    # Alice claims to be Bob's socket: the relay still comes from her, to Bob.
    message = alice.send("#muc#m1", {"action": "session-text", "namespace": "muc", "description": {"content": "hi"}}, **{"from": bob.sid})
    assert bob.receive() == relayed(message, "#muc#m1/alice", bob, {"content": "hi", "sent": DATE, "relayed": DATE})
    # The answer is addressed to the claimed 'from' but delivered to Alice.
    ack = event(alice, "muc", "ack", {"acknowledged": DATE, "mid": message["id"], "type": "server-received"}, to=bob.sid)
    assert alice.receive() == ack
    request = {"action": "iq-set", "query": "session-leave", "transaction": "t1", "description": {"rid": "#muc#m1"}}
    leave = alice.send(SERVER_ID, request, **{"from": "mallory"})
    assert alice.receive() == iq_result(leave, {"rid": "#muc#m1"})
    assert bob.receive() == event(bob, "muc", "left", {"member": alice.identity, "rid": "#muc#m1"})
    assert_quiet(bob)


def test_dropped_connection_leaves_all_its_rooms(daemon_factory, puppet):
    daemon = daemon_factory()
    alice, bob = joined_room(puppet, daemon, "#muc#p2p")  # a P2P room despite the prefix
    carol = connect(puppet, daemon, "carol", "carol")
    join(alice, "group", "muc-join")  # a MUC room without the prefix
    join(bob, "group", "muc-join", members=(alice,))
    join(carol, "group", "muc-join", members=(alice, bob))
    assert alice.receive() == event(alice, "muc", "joined", {"member": bob.identity, "rid": "group"})
    assert alice.receive() == event(alice, "muc", "joined", {"member": carol.identity, "rid": "group"})
    assert bob.receive() == event(bob, "muc", "joined", {"member": carol.identity, "rid": "group"})
    puppet.close("alice")
    assert puppet.next("alice", "disconnect")["reason"] == "io client disconnect"
    left = [bob.receive(), bob.receive()]
    left.sort(key=lambda message: message["jsongle"]["description"]["rid"])
    assert left == [
        event(bob, "room", "left", {"member": alice.identity, "rid": "#muc#p2p"}),
        event(bob, "muc", "left", {"member": alice.identity, "rid": "group"}),
    ]
    assert carol.receive() == event(carol, "muc", "left", {"member": alice.identity, "rid": "group"})
    # Bob is now alone in the P2P room.
    message = bob.send("#muc#p2p", call("session-propose"))
    assert bob.receive() == session_info(bob.sid, message["jsongle"], "unreachable", {"ended": DATE})


# -- malformed input: a clean error, and the server stays up --------------


@pytest.mark.parametrize("payload", [["a", "b"], "hello", 42, None], ids=["array", "string", "number", "null"])
def test_payload_that_is_not_an_object(daemon_factory, puppet, payload):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    alice.emit(payload)
    assert alice.receive() == session_error(alice.sid, 400002, "Missing property 'jsongle' in message")
    join(alice, "r1")


def test_message_without_jsongle(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice")  # even before the hello
    alice.emit()
    assert alice.receive() == session_error(alice.sid, 400002, "Missing property 'jsongle' in message")
    alice.puppet.emit("alice", "jsongle", {"id": "m1", "from": "me", "to": SERVER_ID})
    assert alice.receive() == session_error("me", 400002, "Missing property 'jsongle' in message")
    alice.send(SERVER_ID, "iq-set")
    assert alice.receive() == session_error(alice.sid, 400002, "Missing property 'jsongle' in message")


def test_iq_set_without_description(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    for query in ("session-join", "muc-join", "session-leave"):
        request = alice.iq_set(query)
        assert alice.receive() == iq_error(request, 400001, "Missing 'rid' parameter")
    request = alice.iq_set("session-join", "r1")
    assert alice.receive() == iq_error(request, 400001, "Missing 'rid' parameter")
    bob = connect(puppet, daemon, "bob", "bob")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))


@pytest.mark.parametrize("rid", [42, ["r1"], {"id": "r1"}, True], ids=["number", "array", "object", "boolean"])
def test_rid_that_is_not_a_string(daemon_factory, puppet, rid):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    for query in ("session-join", "muc-join", "session-leave"):
        request = alice.iq_set(query, {"rid": rid})
        assert alice.receive() == iq_error(request, 400001, "Missing 'rid' parameter")
    join(alice, "r1")
