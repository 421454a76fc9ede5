"""Parked sessions in Redis (jsongle.cluster.sessions), with nodes in this process.

The scripts behind resume across processes, against a real Redis: a parked
session's packets keep their offsets, messages sent to it while parked are
kept after them, a claim hands everything after the client's offset to the
taker, what still reaches the parked node afterwards is forwarded, and a
session past its window or its bound leaves its rooms from a survivor.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from jsongle.interfaces import ConnectRefused, ISessionPark, ParkedSession
from tests.test_cluster_registry import member, nodes, until

__all__ = ["nodes"]

HEAD = b'2["jsongle",'


def packet(body: dict[str, Any], offset: int) -> bytes:
    return HEAD + json.dumps(body, separators=(",", ":")).encode() + b',"%d"]' % offset


def room_nodes(node: Any, rid: str) -> Any:
    """The node of each member of ``rid``, as Redis holds it."""
    return node.link.command("GET", "jsongle:room:" + rid).addCallback(lambda raw: [m[3] for m in json.loads(raw)["m"]])


@pytest_twisted.inlineCallbacks
def park_bob(holder: Any, pid: str = "p1") -> Any:
    """Bob (connection c-bob) in room r1 on ``holder``, parked with packets 3 and 4."""
    yield holder.registry.join("r1", "room", member("c-bob", "bob"))
    parked = ParkedSession(pid, "c-bob", "/", {"uid": "bob"}, 3, 4)
    yield holder.park.park(parked, [packet({"n": 3}, 3), packet({"n": 4}, 4)], "")


@pytest_twisted.inlineCallbacks
def test_parked_messages_keep_their_offsets_and_a_claim_takes_them_after_the_client_offset(nodes):
    holder = yield nodes("holder")
    taker = yield nodes("taker")
    assert verifyObject(ISessionPark, holder.park)
    yield taker.registry.join("r1", "room", member("c-alice", "alice"))
    yield park_bob(holder)
    assert (yield room_nodes(holder, "r1")) == ["taker", "~p1"]
    peeked = yield taker.park.peek("p1")
    assert peeked == {"sid": "c-bob", "ns": "/", "state": {"uid": "bob"}}
    # Alice's node sends to Bob while parked: kept under offset 5.
    yield until(lambda: [m.node for m in taker.registry.room("r1").members] == ["taker", "~p1"], "snapshot")
    taker.bus.send("~p1", "c-bob", {"n": 5})
    claimed = yield taker.park.claim("p1", 3, "/")
    assert claimed == {"sid": "c-bob", "state": {"uid": "bob"}, "last": 5,
                       "missed": [packet({"n": 4}, 4), packet({"n": 5}, 5)]}
    assert (yield room_nodes(taker, "r1")) == ["taker", "taker"]
    # Taken: a second claim finds nothing, and a late message for the parked
    # node goes on to the taker.
    assert (yield taker.park.claim("p1", 5, "/")) is None
    holder.park.keep_message("p1", "c-bob", {"n": 6})
    yield until(lambda: taker.delivered == [("c-bob", {"n": 6})], "forwarded")
    assert (yield taker.park.peek("p1")) is None


@pytest_twisted.inlineCallbacks
def test_an_offset_the_log_cannot_serve_or_another_namespace_claims_nothing(nodes):
    holder = yield nodes("holder")
    taker = yield nodes("taker")
    yield park_bob(holder)
    for offset, namespace in ((1, "/"), (9, "/"), (4, "/admin")):
        assert (yield taker.park.claim("p1", offset, namespace)) is None
    # Still parked: the right offset takes it, with nothing missed.
    claimed = yield taker.park.claim("p1", 4, "/")
    assert claimed["missed"] == [] and claimed["last"] == 4


@pytest_twisted.inlineCallbacks
def test_a_parked_session_past_its_window_leaves_its_rooms_from_one_survivor(nodes):
    holder = yield nodes("holder", window=0.3, node_timeout=2.0)
    one = yield nodes("one", window=0.3, node_timeout=2.0)
    two = yield nodes("two", window=0.3, node_timeout=2.0)
    yield one.registry.join("r1", "room", member("c-alice", "alice"))
    yield park_bob(holder)
    # Whichever node sweeps it announces the leave (to Alice, on node one).
    everyone = (holder, one, two)
    yield until(lambda: any(node.announced for node in everyone), "left announced", timeout=10)
    [result] = [result for node in everyone for result in node.announced]
    assert result.left.connection_id == "c-bob" and [m.connection_id for m in result.remaining] == ["c-alice"]
    yield until(lambda: one.outcomes + two.outcomes + holder.outcomes == ["expired"], "expired counted once")
    assert (yield one.park.peek("p1")) is None
    assert (yield one.link.command("SMEMBERS", "jsongle:parked")) == []


@pytest_twisted.inlineCallbacks
def test_a_parked_session_past_its_bound_ends(nodes):
    holder = yield nodes("holder", buffer_bytes=200, node_timeout=2.0)
    other = yield nodes("other", buffer_bytes=200, node_timeout=2.0)
    yield other.registry.join("r1", "room", member("c-alice", "alice"))
    yield park_bob(holder)
    for n in range(5):
        other.park.keep_message("p1", "c-bob", {"n": n, "pad": "x" * 40})
    yield until(lambda: other.announced or holder.announced, "left announced", timeout=10)
    assert (yield other.park.claim("p1", 4, "/")) is None


@pytest_twisted.inlineCallbacks
def test_asking_for_a_session(nodes):
    holder = yield nodes("holder")
    taker = yield nodes("taker")
    asked: list[Any] = []

    def hold(pid: str, asker: str, remote: str, auth: dict[str, Any]) -> bool:
        asked.append((pid, asker, remote, auth))
        if auth.get("appToken") != "good":
            raise ConnectRefused("bad token")
        if pid != "p1":
            return False
        parked = ParkedSession(pid, "c-bob", "/", {"uid": "bob"}, 1, 0)
        holder.park.park(parked, [], asker)
        return True

    holder.park.serve(hold)
    # Nobody holds it: every node says so, no timeout waited for.
    assert (yield taker.park.ask("nope", "10.0.0.1", {"appToken": "good"})) is False
    with pytest.raises(ConnectRefused) as refusal:
        yield taker.park.ask("p1", "10.0.0.1", {"appToken": "bad"})
    assert refusal.value.message == "bad token"
    assert (yield taker.park.ask("p1", "10.0.0.1", {"appToken": "good"})) is True
    assert asked[-1] == ("p1", "taker", "10.0.0.1", {"appToken": "good"})
    assert (yield taker.park.peek("p1"))["sid"] == "c-bob"
