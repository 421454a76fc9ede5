"""Several daemons on one real Redis, driven by the real socket.io-client.

Each client talks to one daemon; the members of a room sit on different
daemons and must receive exactly what one daemon alone sends (the
expected messages are those of ``test_protocol_e2e``).  Also: the race for
the last seat, a daemon killed with SIGKILL, and Redis going away and
coming back under a running cluster.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from typing import Any

import pytest

from tests.test_protocol_e2e import (
    DATE,
    Client,
    assert_quiet,
    call,
    connect,
    event,
    iq_error,
    iq_result,
    join,
    relayed,
    session_info,
)

#: A short nodeTimeout, so a dead node is noticed quickly.
NODE_TIMEOUT = 2.0
UNAVAILABLE = "Rooms are unavailable: the cluster's Redis cannot be reached; try again later"


def start_cluster(daemon_factory: Any, redis: Any, count: int, joined: bool = True, **config: Any) -> list[Any]:
    """``count`` nodes on ``redis``; with ``joined``, each has reached Redis.

    A node listens before its first Redis connection is up, and answers joins
    503001 until then: a test that joins at once must wait for it.
    """
    nodes = [
        daemon_factory({"redisUrl": redis.url, "nodeId": f"node{n}", "nodeTimeout": f"{NODE_TIMEOUT}s", **config})
        for n in range(1, count + 1)
    ]
    if joined:
        for node in nodes:
            wait_joined(node)
    return nodes


def wait_joined(node: Any) -> Any:
    """Wait for ``node``'s first Redis connection (joins answer 503001 before it)."""
    node.wait_for_line(r"redis reachable: node \S+ joins the cluster")
    return node


def gauges(daemon: Any) -> dict[str, float]:
    """The jsongle_cluster_* samples of one daemon's /metrics."""
    with urllib.request.urlopen(daemon.rest_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("jsongle_cluster_"):
            name, value = line.split()
            found[name] = float(value)
    return found


def poll(check: Any, timeout: float, what: str) -> Any:
    """Call ``check`` until it returns something true, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(0.1)


def muc_joined(members: tuple[Client, ...], newcomer: Client, rid: str) -> None:
    for member in members:
        assert member.receive() == event(member, "muc", "joined", {"member": newcomer.identity, "rid": rid})


# -- the same messages as one node ------------------------------------------


def test_call_between_two_nodes(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2)
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node2, "bob", "bob")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    assert alice.receive() == event(alice, "room", "joined", {"member": bob.identity, "rid": "r1"})

    propose = alice.send("r1", call("session-propose"))
    assert bob.receive() == relayed(propose, "r1", bob, {"sdp": "v=0"})
    assert alice.receive() == session_info(alice.sid, propose["jsongle"], "trying", {"tried": DATE})
    dated = {"sdp": "v=0", "sent": DATE, "relayed": DATE}
    for sender, receiver, action in (
        (bob, alice, "session-proceed"),
        (alice, bob, "session-initiate"),
        (bob, alice, "session-accept"),
        (alice, bob, "transport-info"),
        (bob, alice, "transport-info"),
        (alice, bob, "session-terminate"),
    ):
        message = sender.send("r1", call(action))
        assert receiver.receive() == relayed(message, "r1", receiver, dated)
    # Several in a row keep their order.
    candidates = [alice.send("r1", call("transport-info", description={"n": n})) for n in range(5)]
    for n, message in enumerate(candidates):
        assert bob.receive() == relayed(message, "r1", bob, {"n": n, "sent": DATE, "relayed": DATE})

    request = bob.iq_set("session-leave", {"rid": "r1"})
    assert bob.receive() == iq_result(request, {"rid": "r1"})
    assert alice.receive() == event(alice, "room", "left", {"member": bob.identity, "rid": "r1"})
    assert_quiet(alice, bob)


def test_muc_across_three_nodes(redis_server, daemon_factory, puppet):
    node1, node2, node3 = start_cluster(daemon_factory, redis_server, 3)
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node2, "bob", "bob")
    carol = connect(puppet, node3, "carol", "carol")
    rid = "#muc#m1"
    join(alice, rid, "muc-join")
    join(bob, rid, "muc-join", members=(alice,))
    muc_joined((alice,), bob, rid)
    join(carol, rid, "muc-join", members=(alice, bob))
    muc_joined((alice, bob), carol, rid)

    for sender in (alice, bob, carol):
        message = sender.send(rid, {"action": "session-text", "namespace": "muc", "description": {"content": f"hi from {sender.uid}"}})
        expected = {"content": f"hi from {sender.uid}", "sent": DATE, "relayed": DATE}
        for other in (alice, bob, carol):
            if other is not sender:
                assert other.receive() == relayed(message, f"{rid}/{sender.uid}", other, expected)
        ack = {"acknowledged": DATE, "mid": message["id"], "type": "server-received"}
        assert sender.receive() == event(sender, "muc", "ack", ack)

    # Closing a socket leaves its rooms on every node.
    puppet.close("bob")
    for member in (alice, carol):
        assert member.receive() == event(member, "muc", "left", {"member": bob.identity, "rid": rid})
    assert_quiet(alice, carol)


def test_caps_hold_across_nodes(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2, maxMultiRoomPerUser=1)
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node2, "bob", "bob")
    carol = connect(puppet, node2, "carol", "carol")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    alice.receive()  # joined
    request = carol.iq_set("session-join", {"rid": "r1"})
    assert carol.receive() == iq_error(request, 403001, "Max number of members per room already reached")
    request = carol.iq_set("muc-join", {"rid": "r1"})
    assert carol.receive() == iq_error(request, 400001, "Room r1 is not a multiroom")

    # The same user on two nodes: one multi-user room between both devices.
    join(alice, "#muc#a", "muc-join")
    alice_again = connect(puppet, node2, "alice2", "alice")
    request = alice_again.iq_set("muc-join", {"rid": "#muc#b"})
    assert alice_again.receive() == iq_error(request, 403003, "Max number of multi rooms per user already reached")
    join(alice_again, "#muc#a", "muc-join", members=(alice,))
    assert_quiet(bob, carol)


# -- the last seat -----------------------------------------------------------


def test_race_for_the_last_seat(redis_server, daemon_factory, puppet):
    """Two clients on two nodes ask for the last seat at once: one gets it."""
    node1, node2 = start_cluster(daemon_factory, redis_server, 2)
    host = connect(puppet, node1, "host", "host")
    bob = connect(puppet, node1, "bob", "bob")
    carol = connect(puppet, node2, "carol", "carol")
    winners = {"bob": 0, "carol": 0}
    for round in range(50):
        rid = f"seat-{round}"
        join(host, rid)
        # Both requests leave back to back; who goes first alternates.
        racers = (bob, carol) if round % 2 else (carol, bob)
        requests = {client.name: client.iq_set("session-join", {"rid": rid}) for client in racers}
        answers = {client.name: client.receive() for client in (bob, carol)}
        won = [name for name, answer in answers.items() if answer["jsongle"]["action"] == "iq-result"]
        assert len(won) == 1, answers
        winner, loser = (bob, carol) if won == ["bob"] else (carol, bob)
        assert answers[winner.name] == iq_result(requests[winner.name], {"members": [host.identity], "rid": rid})
        assert answers[loser.name] == iq_error(requests[loser.name], 403001, "Max number of members per room already reached")
        assert host.receive() == event(host, "room", "joined", {"member": winner.identity, "rid": rid})
        winners[winner.name] += 1
    print(f"seats won in 50 rounds: {winners}")
    assert_quiet(host, bob, carol)


# -- a node dies -------------------------------------------------------------


def test_killed_node_members_leave(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2)
    alice = connect(puppet, node1, "alice", "alice")
    dave = connect(puppet, node1, "dave", "dave")
    bob = connect(puppet, node2, "bob", "bob")
    carol = connect(puppet, node2, "carol", "carol")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    alice.receive()  # joined
    join(dave, "#muc#m1", "muc-join")
    join(carol, "#muc#m1", "muc-join", members=(dave,))
    muc_joined((dave,), carol, "#muc#m1")
    poll(lambda: gauges(node1) == {"jsongle_cluster_nodes": 2, "jsongle_cluster_users": 4, "jsongle_cluster_conferences": 2},
         10, "cluster gauges before")

    killed_at = time.monotonic()
    node2.signal(signal.SIGKILL)
    deadline = NODE_TIMEOUT + 2
    assert puppet.next_jsongle("alice", timeout=deadline) == event(alice, "room", "left", {"member": bob.identity, "rid": "r1"})
    remaining = max(0.1, killed_at + deadline - time.monotonic())
    assert puppet.next_jsongle("dave", timeout=remaining) == event(dave, "muc", "left", {"member": carol.identity, "rid": "#muc#m1"})
    print(f"left events {time.monotonic() - killed_at:.2f}s after SIGKILL (nodeTimeout {NODE_TIMEOUT}s)")
    poll(lambda: gauges(node1) == {"jsongle_cluster_nodes": 1, "jsongle_cluster_users": 2, "jsongle_cluster_conferences": 2},
         10, "cluster gauges after")
    # The seats are free again.
    erin = connect(puppet, node1, "erin", "erin")
    join(erin, "r1", members=(alice,))
    assert alice.receive() == event(alice, "room", "joined", {"member": erin.identity, "rid": "r1"})
    assert_quiet(alice, dave)


def test_stopped_node_members_leave_at_once(redis_server, daemon_factory, puppet):
    """SIGTERM: the node's clients leave their rooms before it goes, long
    before a nodeTimeout of a minute would have them swept."""
    node1, node2 = start_cluster(daemon_factory, redis_server, 2, nodeTimeout="60s")
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node2, "bob", "bob")
    join(alice, "#muc#m1", "muc-join")
    join(bob, "#muc#m1", "muc-join", members=(alice,))
    muc_joined((alice,), bob, "#muc#m1")
    node2.signal(signal.SIGTERM)
    assert alice.receive() == event(alice, "muc", "left", {"member": bob.identity, "rid": "#muc#m1"})
    assert node2.wait_exit() == 0
    poll(lambda: gauges(node1).get("jsongle_cluster_nodes") == 1, 10, "node 2 gone from the gauges")
    assert_quiet(alice)


# -- Redis goes away ---------------------------------------------------------


def test_redis_loss_and_return(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2)
    alice = connect(puppet, node1, "alice", "alice")
    bob = connect(puppet, node1, "bob", "bob")
    carol = connect(puppet, node2, "carol", "carol")
    join(alice, "r1")
    join(bob, "r1", members=(alice,))
    alice.receive()  # joined

    redis_server.stop()
    # In a call on one node: relaying goes on.
    propose = alice.send("r1", call("session-propose"))
    assert bob.receive() == relayed(propose, "r1", bob, {"sdp": "v=0"})
    assert alice.receive() == session_info(alice.sid, propose["jsongle"], "trying", {"tried": DATE})
    message = bob.send("r1", call("session-accept"))
    assert alice.receive() == relayed(message, "r1", alice, {"sdp": "v=0", "sent": DATE, "relayed": DATE})
    # Joins cannot be decided.
    request = carol.iq_set("session-join", {"rid": "r2"})
    assert carol.receive() == iq_error(request, 503001, UNAVAILABLE)

    redis_server.start()
    restarted = time.monotonic()

    def carol_joins() -> bool:
        request = carol.iq_set("session-join", {"rid": "r2"})
        answer = carol.receive()
        if answer["jsongle"]["action"] == "iq-error":
            assert answer == iq_error(request, 503001, UNAVAILABLE)
            return False
        assert answer == iq_result(request, {"members": [], "rid": "r2"})
        return True

    poll(carol_joins, 20, "a join after Redis came back")
    print(f"joins work again {time.monotonic() - restarted:.2f}s after Redis restarted")
    dave = connect(puppet, node1, "dave", "dave")
    join(dave, "r2", members=(carol,))
    assert carol.receive() == event(carol, "room", "joined", {"member": dave.identity, "rid": "r2"})
    message = carol.send("r2", call("session-info"))
    assert dave.receive() == relayed(message, "r2", dave, {"sdp": "v=0", "sent": DATE, "relayed": DATE})
    # Redis restarted empty: node 1 put Alice and Bob back, so r1 is still full.
    request = carol.iq_set("session-join", {"rid": "r1"})
    assert carol.receive() == iq_error(request, 403001, "Max number of members per room already reached")
    message = alice.send("r1", call("session-terminate"))
    assert bob.receive() == relayed(message, "r1", bob, {"sdp": "v=0", "sent": DATE, "relayed": DATE})
    assert_quiet(alice, bob, carol, dave)


# -- one port, several processes ----------------------------------------------


def test_processes_share_one_port_with_reuseport(redis_server, daemon_factory, puppet):
    """Two daemons on one wsPort (SO_REUSEPORT); WebSocket-only clients meet in a room."""
    from tests.support.redis import free_port

    port = free_port()
    config = {"wsPort": port, "reusePort": True}
    daemons = start_cluster(daemon_factory, redis_server, 2, **config)
    assert [d.ws_port for d in daemons] == [port, port]
    shared = type("Shared", (), {"ws_url": f"http://127.0.0.1:{port}"})()
    clients = []
    for n in range(6):
        name = f"user{n}"
        puppet.connect(name, shared.ws_url, auth={"appToken": "test-token"}, reconnection=False, transports=["websocket"])
        client = Client(puppet, name, puppet.next(name, "connect")["id"], uid=name)
        hello = client.receive()
        jsongle = {"action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"]}
        client.send("jsongle-server", {**jsongle, "description": {"uid": name, "dn": name.title()}})
        assert client.receive()["jsongle"]["status"] == "success"
        join(client, "#muc#all", "muc-join", members=tuple(clients))
        for earlier in clients:
            assert earlier.receive() == event(earlier, "muc", "joined", {"member": client.identity, "rid": "#muc#all"})
        clients.append(client)
    message = clients[0].send("#muc#all", {"action": "session-custom", "namespace": "muc", "description": {"x": 1}})
    for other in clients[1:]:
        assert other.receive() == relayed(message, "#muc#all/user0", other, {"x": 1, "sent": DATE, "relayed": DATE})
    counts = []
    for daemon in daemons:
        with urllib.request.urlopen(daemon.rest_url + "/stats", timeout=5) as response:
            counts.append(json.loads(response.read())["users_count"])
    assert sum(counts) == 6, counts


def test_start_before_redis(redis_unstarted, daemon_factory, puppet):
    """A node that starts without Redis serves, refuses joins, and joins the
    cluster once Redis is up."""
    (node1,) = start_cluster(daemon_factory, redis_unstarted, 1, joined=False)
    alice = connect(puppet, node1, "alice", "alice")
    request = alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive() == iq_error(request, 503001, UNAVAILABLE)
    redis_unstarted.start()

    def joined() -> bool:
        request = alice.iq_set("session-join", {"rid": "r1"})
        answer = alice.receive()
        if answer["jsongle"]["action"] == "iq-error":
            assert answer == iq_error(request, 503001, UNAVAILABLE)
            return False
        assert answer == iq_result(request, {"members": [], "rid": "r1"})
        return True

    poll(joined, 20, "a join once Redis is up")
