"""Resume after a network blip (connection state recovery), end to end.

The real daemon, stock socket.io-client sockets (reconnection on) and a TCP
proxy between one of them and the daemon that plays the network: a live P2P
call, the callee's network cut and kept down while the caller goes on
sending, then back. Within ``resumeWindow`` the callee gets its session back
(``recovered``, same socket id, every missed message once and in order) and
the caller never sees it leave; past the window the caller sees ``left`` and
the callee starts afresh.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

from tests.support.switchproxy import SwitchProxy
from tests.test_protocol_e2e import SERVER_ID, TOKEN, Client

FAST_PINGS = {"pingInterval": 1000, "pingTimeout": 1000}
RECONNECT = {"reconnection": True, "reconnectionDelay": 100, "reconnectionDelayMax": 300, "randomizationFactor": 0}


@pytest.fixture
def proxies():
    made: list[SwitchProxy] = []

    def make(port: int) -> SwitchProxy:
        proxy = SwitchProxy(port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def join(puppet: Any, url: str, name: str, uid: str, resume: bool = True, **options: Any) -> Client:
    """Connect (opting in to resume unless told not to), answer the hello."""
    auth: dict[str, Any] = {"appToken": TOKEN}
    if resume:
        auth["resume"] = True
    puppet.connect(name, url, auth=auth, **{**RECONNECT, **options})
    client = Client(puppet, name, puppet.next(name, "connect")["id"])
    answer_hello(client, uid)
    return client


def answer_hello(client: Client, uid: str) -> None:
    hello = client.receive()
    assert hello["jsongle"]["query"] == "session-hello"
    client.uid = uid
    client.send(SERVER_ID, {
        "action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"],
        "description": {"uid": uid, "dn": uid.title()},
    })
    ack = client.receive()
    assert ack["jsongle"] == {"action": "ack", "status": "success", "transaction": hello["jsongle"]["transaction"]}


def call(caller: Client, callee: Client, rid: str) -> None:
    """Both in a P2P room, a call proposed and accepted."""
    callee.iq_set("session-join", {"rid": rid})
    assert callee.receive()["jsongle"]["action"] == "iq-result"
    caller.iq_set("session-join", {"rid": rid})
    assert caller.receive()["jsongle"]["action"] == "iq-result"
    assert callee.receive()["jsongle"]["event"] == "joined"
    sid = str(uuid.uuid4())
    caller.send(rid, {"action": "session-propose", "sid": sid, "initiator": caller.uid, "responder": callee.uid, "description": {}})
    assert caller.receive()["jsongle"]["reason"] == "trying"
    assert callee.receive()["jsongle"]["action"] == "session-propose"
    callee.send(rid, {"action": "session-accept", "sid": sid, "initiator": caller.uid, "responder": callee.uid, "description": {}})
    assert caller.receive()["jsongle"]["action"] == "session-accept"


def keep_talking(caller: Client, rid: str, rounds: int) -> list[str]:
    """The caller sends transport-info and session-text; returns their ids in order."""
    sent = []
    for index in range(rounds):
        info = caller.send(rid, {"action": "transport-info", "sid": "s", "description": {"candidate": f"c{index}"}})
        text = caller.send(rid, {"action": "session-text", "namespace": "room", "description": {"text": f"t{index}"}})
        sent += [info["id"], text["id"]]
        ack = caller.receive()
        assert ack["jsongle"]["event"] == "ack" and ack["jsongle"]["description"]["mid"] == text["id"]
    return sent


def jsongle_lines(puppet: Any, name: str) -> list[dict[str, Any]]:
    return [line for line in puppet.pending(name) if line.get("type") == "event" and line.get("event") == "jsongle"]


def wait_line(daemon: Any, pattern: str, timeout: float = 10.0) -> None:
    daemon.wait_for_line(pattern, timeout=timeout)


@pytest.mark.parametrize("transport", ["websocket", "polling", "upgrade"])
def test_a_call_survives_a_network_cut(daemon_factory, puppet, proxies, transport):
    daemon = daemon_factory({**FAST_PINGS, "resumeWindow": "30s"})
    network = proxies(daemon.ws_port)
    caller = join(puppet, daemon.ws_url, "alice", "alice", transports=["websocket"])
    # "upgrade": the default client, long-polling then WebSocket, both times.
    options = {} if transport == "upgrade" else {"transports": [transport]}
    callee = join(puppet, network.url, "bob", "bob", **options)
    if transport == "upgrade":
        puppet.next("bob", "upgrade")
    call(caller, callee, "r1")
    before = puppet.state("bob")
    assert before["pid"] and before["offset"] and before["connected"]

    assert network.cut(down=True) >= 1
    # The server notices: at once on WebSocket, at the ping timeout on polling.
    wait_line(daemon, rf"{re.escape(callee.sid)} away \(")
    assert puppet.next("bob", "disconnect")["reason"] in ("transport close", "transport error")
    missed = keep_talking(caller, "r1", 3)
    network.up()

    back = puppet.next("bob", "connect", timeout=15)
    assert back["recovered"] is True and back["id"] == callee.sid
    got = [callee.receive() for _ in missed]
    assert [message["id"] for message in got] == missed
    assert [message["jsongle"]["action"] for message in got] == ["transport-info", "session-text"] * 3
    assert all(message["to"] == callee.sid for message in got)
    # Live traffic again, nothing twice, no new hello, no 'left' for the caller.
    live = keep_talking(caller, "r1", 1)
    assert [callee.receive()["id"] for _ in live] == live
    puppet.assert_quiet("bob", "event")
    puppet.assert_quiet("alice", "event")
    seen = [line["args"][0] for line in puppet._seen["bob"] if line.get("type") == "event"]
    ids = [message["id"] for message in seen]
    assert len(ids) == len(set(ids))
    assert sum(1 for message in seen if message["jsongle"].get("query") == "session-hello") == 1
    assert not [m for m in caller.received if m["jsongle"].get("event") == "left"]
    # The callee still talks in its room, with the identity of its hello.
    text = callee.send("r1", {"action": "session-text", "namespace": "room", "description": {"text": "back"}})
    assert caller.receive()["id"] == text["id"]
    daemon.wait_for_line(rf"{re.escape(callee.sid)} resumed from .*: 6 missed packet")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_past_the_window_the_room_sees_left_and_the_client_starts_afresh(daemon_factory, puppet, proxies, transport):
    daemon = daemon_factory({**FAST_PINGS, "resumeWindow": "2s"})
    network = proxies(daemon.ws_port)
    caller = join(puppet, daemon.ws_url, "alice", "alice", transports=["websocket"])
    callee = join(puppet, network.url, "bob", "bob", transports=[transport])
    call(caller, callee, "r1")

    network.cut(down=True)
    wait_line(daemon, rf"{re.escape(callee.sid)} away \(")
    away_at = time.monotonic()
    keep_talking(caller, "r1", 1)
    left = caller.receive()
    assert left["jsongle"]["event"] == "left" and left["jsongle"]["description"]["member"]["uid"] == "bob"
    assert time.monotonic() - away_at > 1.5
    wait_line(daemon, rf"{re.escape(callee.sid)} not resumed \(resume window passed\)")
    network.up()

    back = puppet.next("bob", "connect", timeout=15)
    assert back["recovered"] is False and back["id"] != callee.sid
    fresh = Client(puppet, "bob", back["id"])
    answer_hello(fresh, "bob")
    assert fresh.received[0]["to"] == back["id"]
    fresh.iq_set("session-join", {"rid": "r1"})
    assert fresh.receive()["jsongle"]["description"]["members"] == [{"uid": "alice", "dn": "Alice"}]
    assert caller.receive()["jsongle"]["event"] == "joined"
    assert metric(daemon, 'jsongle_resumes_total{outcome="expired"}') == 1
    assert metric(daemon, 'jsongle_resumes_total{outcome="unknown"}') == 1
    assert metric(daemon, "users_count") == 2


def metric(daemon: Any, name: str) -> float:
    """One sample of the daemon's /metrics (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(daemon.rest_url + "/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_the_newest_connection_takes_the_session_over_and_the_old_transport_cannot_undo_it(
    daemon_factory, puppet, proxies
):
    """The client's side of the network is cut, the server's stays open and
    silent: the client reconnects while the server still holds the old
    transport (its ping timeout has not come). The new connection wins and the
    old transport is closed; its timeout, later, changes nothing."""
    daemon = daemon_factory({**FAST_PINGS, "resumeWindow": "30s"})
    network = proxies(daemon.ws_port)
    caller = join(puppet, daemon.ws_url, "alice", "alice", transports=["websocket"])
    callee = join(puppet, network.url, "bob", "bob", transports=["websocket"])
    call(caller, callee, "r1")
    network.cut(client_side_only=True)
    back = puppet.next("bob", "connect", timeout=15)
    assert back["recovered"] is True and back["id"] == callee.sid
    daemon.wait_for_line(rf"{re.escape(callee.sid)} resumed from")
    sent = keep_talking(caller, "r1", 2)
    assert [callee.receive()["id"] for _ in sent] == sent
    # Past the old transport's ping timeout (1 s + 1 s): nothing happens to the session.
    puppet.assert_quiet("alice", "event", within=2.5)
    assert not any(f"{callee.sid} away (" in line for line in daemon.lines())
    assert metric(daemon, 'jsongle_resumes_total{outcome="recovered"}') == 1
    assert metric(daemon, "jsongle_sessions_away") == 0
    assert puppet.state("bob")["connected"] is True


def test_without_resume_no_offsets_and_a_one_argument_python_socketio_handler_works(daemon_factory, puppet):
    from tests.test_transport_e2e import PyClient

    pytest.importorskip("socketio")
    daemon = daemon_factory({"resumeWindow": "30s"})
    stock = join(puppet, daemon.ws_url, "alice", "alice", resume=False)
    assert puppet.state("alice")["pid"] is None
    python = PyClient()  # its handler is ``lambda data: ...``: one argument
    try:
        python.connect(daemon.ws_url, ["websocket"])
        hello = python.next("jsongle")
        assert hello["jsongle"]["query"] == "session-hello"
        python.sio.emit("jsongle", {"to": SERVER_ID, "jsongle": {
            "action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"],
            "description": {"uid": "bob"}}})
        assert python.next("jsongle")["jsongle"]["status"] == "success"
        python.sio.emit("jsongle", {"to": SERVER_ID, "jsongle": {
            "action": "iq-set", "query": "session-join", "transaction": "t1", "description": {"rid": "r1"}}})
        assert python.next("jsongle")["jsongle"]["action"] == "iq-result"
        stock.iq_set("session-join", {"rid": "r1"})
        assert stock.receive()["jsongle"]["action"] == "iq-result"
        assert python.next("jsongle")["jsongle"]["event"] == "joined"
        text = stock.send("r1", {"action": "session-text", "namespace": "room", "description": {"text": "hi"}})
        assert python.next("jsongle")["id"] == text["id"]
        assert stock.receive()["jsongle"]["event"] == "ack"
    finally:
        python.close()
    lines = [line for line in puppet._seen["alice"] if line.get("type") == "event"]
    assert lines and all(len(line["args"]) == 1 for line in lines)  # no offset argument


def test_a_pid_alone_lets_no_one_in_and_a_forged_one_gets_a_fresh_session(daemon_factory, puppet):
    daemon = daemon_factory({"resumeWindow": "30s"})
    alice = join(puppet, daemon.ws_url, "alice", "alice")
    pid = puppet.state("alice")["pid"]
    # Alice's real pid with a wrong token: refused, and Alice keeps her session.
    puppet.connect("thief", daemon.ws_url, auth={"appToken": "wrong", "pid": pid, "offset": "1"}, reconnection=False)
    assert puppet.next("thief", "connect_error")["message"] == "invalid appToken"
    assert metric(daemon, 'jsongle_resumes_total{outcome="refused"}') == 1
    # A forged pid with the right token: a session of its own, never Alice's.
    puppet.connect("forger", daemon.ws_url, auth={"appToken": TOKEN, "pid": pid[:-2] + "xx", "offset": "1", "resume": True},
                   reconnection=False)
    forged = puppet.next("forger", "connect")
    assert forged["id"] != alice.sid and forged["recovered"] is False
    hello = puppet.next_jsongle("forger")
    assert hello["jsongle"]["query"] == "session-hello" and hello["to"] == forged["id"]
    assert puppet.state("forger")["pid"] != pid
    assert metric(daemon, 'jsongle_resumes_total{outcome="unknown"}') == 1
    # Alice noticed nothing.
    puppet.assert_quiet("alice", "event")
    assert puppet.state("alice")["connected"] is True and puppet.state("alice")["id"] == alice.sid


def test_a_call_across_two_nodes_survives_a_cut_when_the_client_comes_back_to_its_node(
    redis_server, daemon_factory, puppet, proxies
):
    """With redisUrl: the caller on one node, the callee on another behind a
    cut network; what the caller's node sends over the bus while the callee
    is away is kept by the callee's node and delivered on its return."""
    from tests.test_cluster_e2e import start_cluster

    node1, node2 = start_cluster(daemon_factory, redis_server, 2, resumeWindow="30s", **FAST_PINGS)
    network = proxies(node2.ws_port)
    caller = join(puppet, node1.ws_url, "alice", "alice", transports=["websocket"])
    callee = join(puppet, network.url, "bob", "bob", transports=["websocket"])
    call(caller, callee, "r1")
    network.cut(down=True)
    wait_line(node2, rf"{re.escape(callee.sid)} away \(")
    missed = keep_talking(caller, "r1", 3)
    network.up()
    back = puppet.next("bob", "connect", timeout=15)
    assert back["recovered"] is True and back["id"] == callee.sid
    assert [callee.receive()["id"] for _ in missed] == missed
    puppet.assert_quiet("bob", "event")
    assert not [m for m in caller.received if m["jsongle"].get("event") == "left"]
    text = callee.send("r1", {"action": "session-text", "namespace": "room", "description": {"text": "back"}})
    assert caller.receive()["id"] == text["id"]


def test_a_resume_with_per_user_tokens_needs_a_token_for_the_same_user(daemon_factory, puppet, proxies):
    from tests.test_tokens_e2e import JWT_CONFIG, token

    daemon = daemon_factory({**FAST_PINGS, **JWT_CONFIG, "resumeWindow": "30s"})
    network = proxies(daemon.ws_port)
    puppet.connect("bob", network.url, auth={"appToken": TOKEN, "token": token("bob"), "resume": True},
                   transports=["websocket"], **RECONNECT)
    bob = Client(puppet, "bob", puppet.next("bob", "connect")["id"])
    answer_hello(bob, "bob")
    pid = puppet.state("bob")["pid"]
    network.cut(down=True)
    wait_line(daemon, rf"{re.escape(bob.sid)} away \(")
    # Bob's pid with Mallory's valid token: refused, Bob's session untouched.
    puppet.connect("mallory", daemon.ws_url, auth={"appToken": TOKEN, "token": token("mallory"), "pid": pid, "offset": "2"},
                   reconnection=False)
    assert puppet.next("mallory", "connect_error")["message"] == "token does not match the session"
    network.up()
    back = puppet.next("bob", "connect", timeout=15)
    assert back["recovered"] is True and back["id"] == bob.sid
    assert metric(daemon, 'jsongle_resumes_total{outcome="refused"}') == 1
