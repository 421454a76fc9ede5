"""Faults a cluster must survive: Redis restarted empty, a link lost past nodeTimeout.

Real daemons on a real Redis, driven by socket.io-client.  One daemon may
reach Redis through a TCP proxy the test controls, so its link alone can be
cut (the other daemons keep theirs) and mended.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.support.tcpproxy import TcpProxy
from tests.test_cluster_e2e import NODE_TIMEOUT, poll, wait_joined
from tests.test_protocol_e2e import assert_quiet, call, connect, event, iq_result, join, session_error


@pytest.fixture
def proxy(redis_server):
    """A proxy in front of the test's Redis, stopped at teardown."""
    proxy = TcpProxy(redis_server.port).start()
    yield proxy
    proxy.stop()


def node(daemon_factory: Any, port: int, name: str, **config: Any) -> Any:
    return wait_joined(daemon_factory({
        "redisUrl": f"redis://127.0.0.1:{port}/0", "nodeId": name, "nodeTimeout": f"{NODE_TIMEOUT}s", **config,
    }))


def room_members(redis: Any, rid: str) -> list[str]:
    """The uids Redis holds in ``rid`` (a bulk reply needs more than one line)."""
    key = f"jsongle:room:{rid}"
    with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as conn:
        conn.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        data = b""
        while not data.startswith(b"$-1\r\n") and data.count(b"\r\n") < 2:
            data += conn.recv(65536)
    if data.startswith(b"$-1"):
        return []
    return [entry[1] for entry in json.loads(data.split(b"\r\n")[1])["m"]]


def test_redis_restarted_empty_announces_who_left_meanwhile(redis_server, proxy, daemon_factory, puppet):
    """Node 2 reaches Redis through the proxy, so it can be made to come back
    later than node 1: what node 1 announces waits for it."""
    node1 = node(daemon_factory, redis_server.port, "node1")
    node2 = node(daemon_factory, proxy.port, "node2")
    rid = "#muc#m"
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node1, "bob", "bob")
    carol = connect(puppet, node2, "carol", "carol")
    erin = connect(puppet, node1, "erin", "erin")
    join(alice, rid, "muc-join")
    join(bob, rid, "muc-join", members=(alice,))
    assert alice.receive() == event(alice, "muc", "joined", {"member": bob.identity, "rid": rid})
    join(carol, rid, "muc-join", members=(alice, bob))
    for member in (alice, bob):
        assert member.receive() == event(member, "muc", "joined", {"member": carol.identity, "rid": rid})

    lines = len(node1.lines())
    redis_server.command("SHUTDOWN", "NOSAVE")
    redis_server.stop()
    proxy.cut()
    node1.wait_for_line("redis unreachable", start=lines)
    node2.wait_for_line("redis unreachable")
    # Bob drops while Redis is away.
    puppet.close("bob")
    node1.wait_for_line(rf"{bob.sid} disconnected", start=lines)

    redis_server.start()  # empty: no persistence
    returned = time.monotonic()
    node1.wait_for_line("redis reachable again", start=lines, timeout=10)
    reconnected = time.monotonic()
    # Erin asks to join at once: her join waits until node 1 put Alice back.
    request = erin.iq_set("muc-join", {"rid": rid})
    assert puppet.next_jsongle("alice", timeout=1.0) == event(alice, "muc", "left", {"member": bob.identity, "rid": rid})
    print(f"alice heard bob left {time.monotonic() - returned:.2f}s after Redis returned "
          f"({time.monotonic() - reconnected:.2f}s after node 1 reconnected)")
    assert erin.receive() == iq_result(request, {"members": [alice.identity], "rid": rid})
    assert alice.receive() == event(alice, "muc", "joined", {"member": erin.identity, "rid": rid})

    # Node 2 comes back: Carol hears that Bob left and that Erin came; Erin that Carol is there.
    proxy.mend()
    heard = [puppet.next_jsongle("carol", timeout=NODE_TIMEOUT + 3) for _ in range(2)]
    assert sorted(heard, key=lambda m: m["jsongle"]["event"]) == [
        event(carol, "muc", "joined", {"member": erin.identity, "rid": rid}),
        event(carol, "muc", "left", {"member": bob.identity, "rid": rid}),
    ]
    assert erin.receive() == event(erin, "muc", "joined", {"member": carol.identity, "rid": rid})
    poll(lambda: sorted(room_members(redis_server, rid)) == ["alice", "carol", "erin"], 5, "the room in Redis")
    message = carol.send(rid, {"action": "session-text", "namespace": "muc", "description": {"content": "back"}})
    for member in (alice, erin):
        assert member.receive()["id"] == message["id"]
    assert carol.receive()["jsongle"]["event"] == "ack"
    assert_quiet(alice, carol, erin)


def test_long_outage_never_puts_a_member_back_past_a_cap(redis_server, proxy, daemon_factory, puppet):
    caps = {"maxMembersPerMultiRoom": 2, "maxMultiRoomPerUser": 1}
    node1 = node(daemon_factory, proxy.port, "node1", **caps)
    node2 = node(daemon_factory, redis_server.port, "node2", **caps)
    alice = connect(puppet, node1, "alice", "alice")  # P2P room r1
    dave = connect(puppet, node1, "dave", "dave")  # #muc#m, cap 2
    erin = connect(puppet, node1, "erin", "erin")  # #muc#e, one multi-user room per user
    bob = connect(puppet, node2, "bob", "bob")
    frank = connect(puppet, node2, "frank", "frank")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    assert alice.receive() == event(alice, "room", "joined", {"member": bob.identity, "rid": "r1"})
    join(dave, "#muc#m", "muc-join")
    join(frank, "#muc#m", "muc-join", members=(dave,))
    assert dave.receive() == event(dave, "muc", "joined", {"member": frank.identity, "rid": "#muc#m"})
    join(erin, "#muc#e", "muc-join")

    lines = len(node1.lines())
    proxy.cut()
    node1.wait_for_line("redis unreachable", start=lines)
    # Node 2 sweeps node 1 after nodeTimeout: its peers hear they left.
    assert puppet.next_jsongle("bob", timeout=NODE_TIMEOUT + 3) == event(bob, "room", "left", {"member": alice.identity, "rid": "r1"})
    assert puppet.next_jsongle("frank", timeout=3) == event(frank, "muc", "left", {"member": dave.identity, "rid": "#muc#m"})
    # The seats are taken meanwhile; Erin's user joins another multi-user room elsewhere.
    carol = connect(puppet, node2, "carol", "carol")
    gina = connect(puppet, node2, "gina", "gina")
    erin2 = connect(puppet, node2, "erin2", "erin")
    join(carol, "r1", members=(bob,))
    assert bob.receive() == event(bob, "room", "joined", {"member": carol.identity, "rid": "r1"})
    join(gina, "#muc#m", "muc-join", members=(frank,))
    assert frank.receive() == event(frank, "muc", "joined", {"member": gina.identity, "rid": "#muc#m"})
    poll(lambda: room_members(redis_server, "#muc#e") == [], 5, "erin swept from #muc#e")
    join(erin2, "#muc#x", "muc-join")

    proxy.mend()
    node1.wait_for_line("redis reachable again", start=lines, timeout=10)
    # Nobody is put back past a cap: each is told it is out of its room.
    assert alice.receive() == event(alice, "room", "left", {"member": alice.identity, "rid": "r1"})
    assert dave.receive() == event(dave, "muc", "left", {"member": dave.identity, "rid": "#muc#m"})
    assert erin.receive() == event(erin, "muc", "left", {"member": erin.identity, "rid": "#muc#e"})
    assert room_members(redis_server, "r1") == ["bob", "carol"]
    assert room_members(redis_server, "#muc#m") == ["frank", "gina"]
    assert room_members(redis_server, "#muc#e") == []

    # What they send there afterwards reaches no one.
    message = alice.send("r1", call("transport-info"))
    assert alice.receive() == session_error(alice.sid, 404002, "Can't call - not in room r1")
    message = dave.send("#muc#m", {"action": "session-text", "namespace": "muc", "description": {"content": "hi"}})
    assert dave.receive() == session_error(dave.sid, 404002, "Can't call - not in room #muc#m")
    message = erin.send("#muc#e", {"action": "session-text", "namespace": "muc", "description": {"content": "hi"}})
    assert erin.receive() == session_error(erin.sid, 404002, "Can't call - not in room #muc#e")
    del message
    # The call in r1 is Bob's and Carol's alone.
    propose = bob.send("r1", call("session-propose"))
    assert carol.receive()["jsongle"]["action"] == "session-propose"
    assert bob.receive()["jsongle"]["action"] == "session-info"
    del propose
    # Alice may join again where there is room.
    join(alice, "r2")
    assert_quiet(alice, dave, erin, bob, carol, frank, gina, erin2)
