"""The business metrics after real traffic: two socket.io-client users call,
chat, leave and disconnect, and ``GET /stats`` says exactly what happened.

The traffic counters are checked to the byte: every JSONgle message the
clients sent and received is re-encoded the way it crossed the wire.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from tests.test_protocol_e2e import (
    Client,
    assert_quiet,
    call,
    connect,
    join,
    joined_room,
)


def stats(daemon: Any) -> dict[str, float]:
    with urllib.request.urlopen(daemon.rest_url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def wait_stats(daemon: Any, expected: dict[str, float], timeout: float = 10.0) -> dict[str, float]:
    """Poll ``/stats`` until the *expected* subset holds (a message that gets
    no answer is counted when the server has read it, not when it was sent)."""
    deadline = time.monotonic() + timeout
    while True:
        current = stats(daemon)
        if all(current[key] == value for key, value in expected.items()):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"/stats {current} never matched {expected}")
        time.sleep(0.05)


def packet_size(message: dict[str, Any]) -> int:
    """The Socket.IO EVENT packet of a ``jsongle`` message, in bytes."""
    return len(("2" + json.dumps(["jsongle", message], separators=(",", ":"), ensure_ascii=False)).encode("utf-8"))


def traffic(clients: tuple[Client, ...]) -> tuple[int, int]:
    """(bytes the server received, bytes it sent) of JSONgle traffic."""
    received = sum(packet_size(message) for client in clients for message in client.sent)
    sent = sum(packet_size(message) for client in clients for message in client.received)
    return received, sent


def test_business_metrics_after_a_real_session(daemon_factory, puppet):
    daemon = daemon_factory()
    daemon.wait_for_port("rest")
    started = time.monotonic()
    assert set(stats(daemon).values()) == {0}

    alice, bob = joined_room(puppet, daemon, "r1")
    wait_stats(daemon, {"users_count": 2, "users_total": 2, "conferences_count": 1, "conferences_total": 1})

    # A call: propose (trying back), accept, candidates both ways, a failure
    # report with its duration, terminate.
    alice.send("r1", call("session-propose"))
    assert bob.receive()["jsongle"]["action"] == "session-propose"
    assert alice.receive()["jsongle"]["reason"] == "trying"
    bob.send("r1", call("session-accept"))
    assert alice.receive()["jsongle"]["action"] == "session-accept"
    alice.send("r1", call("transport-info", description={"candidate": "candidate:1 1 udp 1 10.0.0.1 5000 typ host"}))
    assert bob.receive()["jsongle"]["action"] == "transport-info"
    bob.send("r1", call("transport-info", description={"candidate": "candidate:2 1 udp 1 10.0.0.2 5000 typ host"}))
    assert alice.receive()["jsongle"]["action"] == "transport-info"
    alice.send("r1", {"action": "session-metrics", "description": {"error": "ice-failed", "duration": 12}})
    alice.send("r1", call("session-terminate"))
    assert bob.receive()["jsongle"]["action"] == "session-terminate"
    wait_stats(daemon, {"p2p_total": 1, "p2p_failed_total": 1, "p2p_duration_total": 12})

    # A MUC room: a text (acknowledged) and a reaction.
    join(alice, "#muc#m1", "muc-join")
    join(bob, "#muc#m1", "muc-join", members=(alice,))
    assert alice.receive()["jsongle"]["event"] == "joined"
    wait_stats(daemon, {"conferences_count": 2, "conferences_total": 2})
    alice.send("#muc#m1", {"action": "session-text", "namespace": "muc", "description": {"content": "hello"}})
    assert bob.receive()["jsongle"]["description"]["content"] == "hello"
    assert alice.receive()["jsongle"]["event"] == "ack"
    bob.send("#muc#m1", {"action": "session-event", "namespace": "muc", "event": "reaction", "description": {"emoji": "+1"}})
    assert alice.receive()["jsongle"]["event"] == "reaction"
    wait_stats(daemon, {"messages_total": 1, "reactions_total": 1})

    # Leaving the P2P room empties it at once.
    alice.iq_set("session-leave", {"rid": "r1"})
    assert alice.receive()["jsongle"]["action"] == "iq-result"
    assert bob.receive()["jsongle"]["event"] == "left"
    bob.iq_set("session-leave", {"rid": "r1"})
    assert bob.receive()["jsongle"]["action"] == "iq-result"
    wait_stats(daemon, {"conferences_count": 1, "conferences_total": 2})

    # Disconnects empty the MUC room; Bob still hears Alice leave.
    puppet.close("alice")
    assert puppet.next("alice", "disconnect")["reason"] == "io client disconnect"
    assert bob.receive()["jsongle"]["event"] == "left"
    wait_stats(daemon, {"users_count": 1, "conferences_count": 1})
    assert_quiet(bob)
    puppet.close("bob")
    assert puppet.next("bob", "disconnect")["reason"] == "io client disconnect"
    final = wait_stats(daemon, {"users_count": 0, "conferences_count": 0})
    elapsed = time.monotonic() - started

    received, sent = traffic((alice, bob))
    assert received > 0 and sent > received  # hellos, acks and events come on top
    duration = final.pop("duration_total")
    assert 0 < duration <= 2 * elapsed / 60
    assert final == {
        "p2p_count": 0,
        "users_count": 0,
        "users_total": 2,
        "conferences_count": 0,
        "conferences_total": 2,
        "recv_total": pytest.approx(received / 1e6, rel=1e-9),
        "sent_total": pytest.approx(sent / 1e6, rel=1e-9),
        "p2p_total": 1,
        "p2p_failed_total": 1,
        "p2p_duration_total": 12,
        "messages_total": 1,
        "reactions_total": 1,
        "p2p_count": 0,
    }
