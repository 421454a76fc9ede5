"""Resume across the processes of a cluster, end to end.

Two daemons on one Redis, stock socket.io-client sockets (reconnection on)
and a TCP proxy that plays the network and the load balancer: the callee's
reconnect lands on the other process. That process asks the holder for the
session, the holder parks it in Redis, the new one takes it over: the same
socket id, ``recovered``, every missed message once and in order, no
``left`` for the room. When the holder is stopped (SIGTERM) mid-call it parks
its sessions before it exits; messages for them wait in Redis, and a session
whose window passes leaves its rooms from a surviving process.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest

from tests.test_cluster_e2e import start_cluster
from tests.test_protocol_e2e import TOKEN, Client
from tests.test_resume_e2e import FAST_PINGS, RECONNECT, answer_hello, call, join, keep_talking, metric, proxies, wait_line

__all__ = ["proxies"]

SIGTERM_EXIT = 0


def said(daemon: Any, pattern: str) -> bool:
    """Whether a line of the daemon's output so far matches ``pattern``."""
    return any(re.search(pattern, line) for line in daemon.lines())


def call_sid(caller: Client) -> str:
    """The sid of the call the caller proposed."""
    return next(m["jsongle"]["sid"] for m in caller.received if m["jsongle"].get("action") == "session-accept")


def poll_metric(daemon: Any, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(daemon, name) != value:
        assert time.monotonic() < deadline, f"{name} is not {value}"
        time.sleep(0.05)


def call_across(
    redis_server: Any, daemon_factory: Any, puppet: Any, proxies: Any, window: str = "30s", transport: str = "websocket"
) -> tuple[Any, Any, Any, Client, Client]:
    """Two processes on one Redis; Alice on the first, Bob on the second
    behind the network proxy; a call between them in room r1."""
    node1, node2 = start_cluster(daemon_factory, redis_server, 2, resumeWindow=window, **FAST_PINGS)
    network = proxies(node2.ws_port)
    caller = join(puppet, node1.ws_url, "alice", "alice", transports=["websocket"])
    callee = join(puppet, network.url, "bob", "bob", transports=[transport])
    call(caller, callee, "r1")
    return node1, node2, network, caller, callee


def assert_recovered(puppet: Any, callee: Client, caller: Client, missed: list[str], rid: str) -> None:
    """The callee is back with its session: missed messages once, in order, then live ones."""
    back = puppet.next(callee.name, "connect", timeout=20)
    assert back["recovered"] is True and back["id"] == callee.sid
    got = [callee.receive() for _ in missed]
    assert [message["id"] for message in got] == missed
    assert all(message["to"] == callee.sid for message in got)
    live = keep_talking(caller, rid, 2)
    assert [callee.receive()["id"] for _ in live] == live
    # It still talks in its room with the identity of its one hello.
    text = callee.send(rid, {"action": "session-text", "namespace": "room", "description": {"text": "back"}})
    assert caller.receive()["id"] == text["id"]
    ack = callee.receive()["jsongle"]
    assert ack["event"] == "ack" and ack["description"]["mid"] == text["id"]
    seen = [line["args"][0] for line in puppet._seen[callee.name] if line.get("type") == "event"]
    ids = [message["id"] for message in seen]
    assert len(ids) == len(set(ids))
    assert sum(1 for message in seen if message["jsongle"].get("query") == "session-hello") == 1
    assert not [m for m in caller.received if m["jsongle"].get("event") == "left"]
    puppet.assert_quiet(callee.name, "event")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_call_survives_a_cut_when_the_client_comes_back_to_the_other_process(
    redis_server, daemon_factory, puppet, proxies, transport
):
    node1, node2, network, caller, callee = call_across(redis_server, daemon_factory, puppet, proxies, transport=transport)

    network.cut(down=True)
    wait_line(node2, rf"{re.escape(callee.sid)} away \(")
    missed = keep_talking(caller, "r1", 3)
    network.retarget(node1.ws_port)  # the balancer now sends it to the other process
    network.up()

    assert_recovered(puppet, callee, caller, missed, "r1")
    wait_line(node2, rf"{re.escape(callee.sid)} parked")
    wait_line(node1, rf"{re.escape(callee.sid)} resumed from .*taken over from another process: 6 missed packet")
    assert metric(node1, 'jsongle_resumes_total{outcome="recovered"}') == 1
    assert metric(node1, "users_count") == 2 and metric(node2, "users_count") == 0
    # The call in progress (counted where it was accepted, Bob's process) is
    # counted where Bob is now, and ends there.
    assert metric(node1, "p2p_count") == 1 and metric(node2, "p2p_count") == 0
    caller.send("r1", {"action": "session-terminate", "sid": call_sid(caller), "reason": "success"})
    assert callee.receive()["jsongle"]["action"] == "session-terminate"
    poll_metric(node1, "p2p_count", 0)


def test_the_newest_connection_wins_across_processes(redis_server, daemon_factory, puppet, proxies):
    """The client's side is cut, the server's stays open and silent: the
    client is back on the other process while the first still holds a live
    transport. The first lets go of it (closed, no ``left``), the second
    takes the session; the old transport's ping timeout changes nothing."""
    node1, node2, network, caller, callee = call_across(redis_server, daemon_factory, puppet, proxies)
    network.retarget(node1.ws_port)
    network.cut(client_side_only=True)
    assert_recovered(puppet, callee, caller, [], "r1")
    wait_line(node2, rf"{re.escape(callee.sid)} parked")
    assert not said(node2, rf"{re.escape(callee.sid)} disconnected")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_sigterm_mid_call_the_client_resumes_on_the_next_process(
    redis_server, daemon_factory, puppet, proxies, transport
):
    """A rolling restart: the callee's process gets SIGTERM and parks its
    sessions; the caller keeps sending while the callee cannot reconnect
    (kept in Redis under their offsets); then it reaches the other process
    and carries on."""
    node1, node2, network, caller, callee = call_across(redis_server, daemon_factory, puppet, proxies, transport=transport)

    network.retarget(node1.ws_port)
    network.down()  # no new connection gets through for now
    node2.signal(signal.SIGTERM)
    assert puppet.next("bob", "disconnect")["reason"] == "transport close"
    assert node2.wait_exit(timeout=15) == SIGTERM_EXIT
    assert said(node2, rf"{re.escape(callee.sid)} parked")
    missed = keep_talking(caller, "r1", 3)
    network.up()

    assert_recovered(puppet, callee, caller, missed, "r1")
    wait_line(node1, rf"{re.escape(callee.sid)} resumed from .*taken over from another process: 6 missed packet")


def test_a_parked_session_whose_window_passes_leaves_from_a_survivor(redis_server, daemon_factory, puppet, proxies):
    node1, node2, network, caller, callee = call_across(redis_server, daemon_factory, puppet, proxies, window="2s")
    network.retarget(node1.ws_port)
    network.down()
    node2.signal(signal.SIGTERM)
    assert node2.wait_exit(timeout=15) == SIGTERM_EXIT
    parked_at = time.monotonic()

    left = puppet.next_jsongle("alice", timeout=15)
    assert left["jsongle"]["event"] == "left" and left["jsongle"]["description"]["member"]["uid"] == "bob"
    assert time.monotonic() - parked_at > 1.0
    wait_line(node1, r"parked session .* not resumed \(resume window passed\): it left 1 room")
    assert metric(node1, 'jsongle_resumes_total{outcome="expired"}') == 1

    network.up()
    back = puppet.next("bob", "connect", timeout=20)
    assert back["recovered"] is False and back["id"] != callee.sid
    fresh = Client(puppet, "bob", back["id"])
    answer_hello(fresh, "bob")
    assert metric(node1, 'jsongle_resumes_total{outcome="unknown"}') == 1


def test_a_forged_pid_gets_a_fresh_session_at_once_in_a_cluster(redis_server, daemon_factory, puppet):
    node1, node2 = start_cluster(daemon_factory, redis_server, 2, resumeWindow="30s")
    alice = join(puppet, node2.ws_url, "alice", "alice", transports=["websocket"])
    pid = puppet.state("alice")["pid"]
    started = time.monotonic()
    puppet.connect("mallory", node1.ws_url, auth={"appToken": TOKEN, "pid": pid + "x", "offset": "1"},
                   reconnection=False, transports=["websocket"])
    fresh = puppet.next("mallory", "connect")
    assert fresh["id"] != alice.sid and fresh["recovered"] is False
    assert time.monotonic() - started < 5  # every node answered: no waiting for a timeout
    # A pid with a wrong token: refused, Alice's session untouched.
    puppet.connect("eve", node1.ws_url, auth={"appToken": "wrong", "pid": pid, "offset": "1"},
                   reconnection=False, transports=["websocket"])
    assert puppet.next("eve", "connect_error")["message"]
    assert puppet.state("alice")["connected"] is True
    assert not said(node2, rf"{re.escape(alice.sid)} parked")


@pytest.mark.parametrize("parked", [False, True])
def test_a_resume_on_another_process_needs_a_token_for_the_same_user(
    redis_server, daemon_factory, puppet, proxies, parked
):
    """Bob's pid with Mallory's valid token, on the other process: refused
    (by the holder, or, once parked by a SIGTERM, by the taker), and Bob's
    session is untouched: he resumes there afterwards."""
    from tests.test_tokens_e2e import JWT_CONFIG, token

    node1, node2 = start_cluster(daemon_factory, redis_server, 2, resumeWindow="30s", **FAST_PINGS, **JWT_CONFIG)
    network = proxies(node2.ws_port)
    puppet.connect("bob", network.url, auth={"appToken": TOKEN, "token": token("bob"), "resume": True},
                   transports=["websocket"], **RECONNECT)
    bob = Client(puppet, "bob", puppet.next("bob", "connect")["id"])
    answer_hello(bob, "bob")
    pid = puppet.state("bob")["pid"]
    network.retarget(node1.ws_port)
    network.down()
    if parked:
        node2.signal(signal.SIGTERM)
        assert node2.wait_exit(timeout=15) == SIGTERM_EXIT
    else:
        network.cut(down=True)
        wait_line(node2, rf"{re.escape(bob.sid)} away \(")
    puppet.connect("mallory", node1.ws_url, auth={"appToken": TOKEN, "token": token("mallory"), "pid": pid, "offset": "2"},
                   reconnection=False, transports=["websocket"])
    assert puppet.next("mallory", "connect_error")["message"] == "token does not match the session"
    assert metric(node1, 'jsongle_resumes_total{outcome="refused"}') == 1
    network.up()
    back = puppet.next("bob", "connect", timeout=20)
    assert back["recovered"] is True and back["id"] == bob.sid
