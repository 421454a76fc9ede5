"""What apps built on the Node.js server rely on, against the running daemon:
member data as the client sent it, error texts as the original writes them,
and the calls-in-progress gauge."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_cluster_e2e import poll, start_cluster
from tests.test_metrics_e2e import stats, wait_stats
from tests.test_protocol_e2e import (
    SERVER_ID,
    UUID,
    Client,
    answer_hello,
    call,
    connect,
    event,
    iq_result,
    session_error,
)


def register(puppet: Any, daemon: Any, name: str, description: dict[str, Any]) -> Client:
    """Connect and answer the hello with ``description``; the ack must succeed."""
    client = connect(puppet, daemon, name)
    client.uid = description["uid"]
    answer_hello(client, client.hello, description)
    assert client.receive()["jsongle"] == {"action": "ack", "status": "success", "transaction": client.hello["jsongle"]["transaction"]}
    return client


ALICE = {"uid": "alice", "dn": "Alice", "avatar": "https://example.test/a.png", "extra": {"team": "blue", "level": 3}}
BOB = {"uid": "bob", "dn": "Bob", "avatar": "https://example.test/b.png", "online": True}


def check_member_data(alice: Client, bob: Client, rid: str, query: str, namespace: str) -> None:
    request = alice.iq_set(query, {"rid": rid})
    assert alice.receive() == iq_result(request, {"members": [], "rid": rid})
    request = bob.iq_set(query, {"rid": rid})
    assert bob.receive() == iq_result(request, {"members": [ALICE], "rid": rid})
    assert alice.receive() == event(alice, namespace, "joined", {"member": BOB, "rid": rid})
    request = bob.iq_set("session-leave", {"rid": rid})
    assert bob.receive() == iq_result(request, {"rid": rid})
    assert alice.receive() == event(alice, namespace, "left", {"member": BOB, "rid": rid})


@pytest.mark.parametrize("query, namespace", [("session-join", "room"), ("muc-join", "muc")])
def test_joined_left_and_members_carry_the_whole_hello_description(daemon_factory, puppet, query, namespace):
    daemon = daemon_factory()
    alice = register(puppet, daemon, "alice", ALICE)
    bob = register(puppet, daemon, "bob", BOB)
    rid = "#muc#m" if namespace == "muc" else "r1"
    check_member_data(alice, bob, rid, query, namespace)
    # A drop is announced with the same data.
    request = bob.iq_set(query, {"rid": rid})
    bob.receive()
    alice.receive()
    puppet.close("bob")
    assert alice.receive() == event(alice, namespace, "left", {"member": BOB, "rid": rid})


def test_member_data_travels_across_the_cluster(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2)
    alice = register(puppet, node1, "alice", ALICE)
    bob = register(puppet, node2, "bob", BOB)
    check_member_data(alice, bob, "#muc#m", "muc-join", "muc")


def test_a_description_over_the_bound_is_refused(daemon_factory, puppet):
    daemon = daemon_factory({"maxMemberDataBytes": 256})
    client = connect(puppet, daemon, "alice")
    answer_hello(client, client.hello, {"uid": "alice", "avatar": "data:" + "x" * 300})
    transaction = client.hello["jsongle"]["transaction"]
    assert client.receive()["jsongle"] == {"action": "ack", "status": "failed", "transaction": transaction}
    error = client.receive()
    assert error["jsongle"]["description"]["errorCode"] == 400001
    assert error["jsongle"]["description"]["errorDetails"].startswith("Invalid 'description' parameter: is larger than 256 bytes")
    # Still unregistered: a hello that fits is taken.
    answer_hello(client, client.hello, {"uid": "alice", "avatar": "/a.png"})
    assert client.receive()["jsongle"]["status"] == "success"


def test_error_texts_and_absent_fields_as_the_original_writes_them(daemon_factory, puppet):
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    message = {"from": alice.sid, "jsongle": {"action": "session-text", "namespace": "room"}}
    alice.emit(message)  # no 'to'
    assert alice.receive() == session_error(alice.sid, 404002, "Can't call - not in room undefined")
    alice.send(SERVER_ID, {"namespace": "room"})  # no action
    assert alice.receive() == session_error(alice.sid, 405001, "Message of type undefined is not supported")
    alice.send(SERVER_ID, {"action": "iq-set", "transaction": "t"})  # no query
    answer = alice.receive()
    assert answer["jsongle"]["description"] == {"errorCode": 404001, "errorDetails": "The query 'undefined' is not supported"}
    # An ack for a message without id carries no mid (not null).
    alice.emit({"from": alice.sid, "to": SERVER_ID, "jsongle": {"action": "session-text", "namespace": "room"}})
    ack = alice.receive()
    assert ack["id"] == UUID and ack["jsongle"]["event"] == "ack"
    assert set(ack["jsongle"]["description"]) == {"acknowledged", "type"}


def test_p2p_count_follows_the_calls(daemon_factory, puppet):
    daemon = daemon_factory()
    daemon.wait_for_port("rest")
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    for client in (alice, bob):
        request = client.iq_set("session-join", {"rid": "r1"})
        assert client.receive()["jsongle"]["action"] == "iq-result"
    alice.receive()  # bob joined
    assert stats(daemon)["p2p_count"] == 0
    for sender, receiver, action in (
        (alice, bob, "session-propose"), (bob, alice, "session-proceed"), (alice, bob, "session-initiate"), (bob, alice, "session-accept"),
    ):
        sender.send("r1", call(action, sid="c1"))
        assert receiver.receive()["jsongle"]["action"] == action
        if action == "session-propose":
            assert alice.receive()["jsongle"]["reason"] == "trying"
    wait_stats(daemon, {"p2p_count": 1, "p2p_total": 1})
    alice.send("r1", call("session-terminate", sid="c1"))
    assert bob.receive()["jsongle"]["action"] == "session-terminate"
    wait_stats(daemon, {"p2p_count": 0})
    # A member dropping mid-call ends it.
    bob.send("r1", call("session-accept", sid="c2"))
    assert alice.receive()["jsongle"]["action"] == "session-accept"
    wait_stats(daemon, {"p2p_count": 1, "p2p_total": 2})
    puppet.close("alice")
    wait_stats(daemon, {"p2p_count": 0})
    assert isinstance(stats(daemon)["p2p_count"], (int, float))
