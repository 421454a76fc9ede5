"""Audio/video conferences in MUC rooms as a mesh (PROTOCOL §13), with stock
clients against the running daemon, on one process and across two."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from tests.test_cluster_e2e import poll, start_cluster
from tests.test_protocol_e2e import (
    DATE,
    Client,
    assert_quiet,
    call,
    connect,
    event,
    iq_result,
    relayed,
    session_error,
    session_info,
)

RID = "#muc#conf"
DATED = {"sdp": "v=0", "sent": DATE, "relayed": DATE}


def call_gauges(daemon: Any) -> tuple[float, float]:
    """(jsongle_conference_calls, p2p_count) from /metrics."""
    with urllib.request.urlopen(daemon.rest_url + "/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    values = dict(line.split() for line in lines if line.startswith(("jsongle_conference_calls ", "p2p_count ")))
    return float(values["jsongle_conference_calls"]), float(values["p2p_count"])


def total_gauges(daemons: list[Any]) -> tuple[float, float]:
    conference = p2p = 0.0
    for daemon in daemons:
        c, p = call_gauges(daemon)
        conference, p2p = conference + c, p2p + p
    return conference, p2p


def three_in_a_muc(puppet: Any, daemons: list[Any]) -> tuple[Client, Client, Client]:
    """Alice, Bob and Carol (spread over ``daemons``) in RID; the joined events consumed."""
    names = ("alice", "bob", "carol")
    clients = [connect(puppet, daemons[n % len(daemons)], name, name) for n, name in enumerate(names)]
    for n, client in enumerate(clients):
        request = client.iq_set("muc-join", {"rid": RID})
        assert client.receive() == iq_result(request, {"members": [c.identity for c in clients[:n]], "rid": RID})
        for earlier in clients[:n]:
            assert earlier.receive() == event(earlier, "muc", "joined", {"member": client.identity, "rid": RID})
    return clients[0], clients[1], clients[2]


def mesh(puppet: Any, daemons: list[Any]) -> None:
    alice, bob, carol = three_in_a_muc(puppet, daemons)
    for daemon in daemons:
        daemon.wait_for_port("rest")
    # Alice calls Carol and Bob at once: two calls, two sids.
    to_carol = alice.send(f"{RID}/carol", call("session-propose", sid="ac", responder="carol", namespace="muc"))
    to_bob = alice.send(f"{RID}/bob", call("session-propose", sid="ab", responder="bob", namespace="muc"))
    assert carol.receive() == relayed(to_carol, f"{RID}/alice", carol, {"sdp": "v=0"})
    assert bob.receive() == relayed(to_bob, f"{RID}/alice", bob, {"sdp": "v=0"})
    assert alice.receive() == session_info(alice.sid, to_carol["jsongle"], "trying", {"tried": DATE})
    assert alice.receive() == session_info(alice.sid, to_bob["jsongle"], "trying", {"tried": DATE})
    for sid, callee in (("ac", carol), ("ab", bob)):
        for sender, receiver, action in (
            (callee, alice, "session-proceed"),
            (alice, callee, "session-initiate"),
            (callee, alice, "session-accept"),
            (alice, callee, "transport-info"),
            (callee, alice, "transport-info"),
        ):
            to = f"{RID}/{receiver.uid}"
            message = sender.send(to, call(action, sid=sid, responder=callee.uid, namespace="muc"))
            assert receiver.receive() == relayed(message, f"{RID}/{sender.uid}", receiver, DATED)
    assert_quiet(alice, bob, carol)  # each message reached only its target
    poll(lambda: total_gauges(daemons) == (2, 0), 10, "two conference calls")
    # A broadcast to the room still reaches everyone.
    text = bob.send(RID, {"action": "session-text", "namespace": "muc", "description": {"content": "hi all"}})
    for receiver in (alice, carol):
        got = receiver.receive()
        assert (got["id"], got["from"], got["to"]) == (text["id"], f"{RID}/bob", receiver.sid)
    assert bob.receive()["jsongle"]["event"] == "ack"
    # Nobody called "dave": unreachable for a call action, 404003 for the others.
    lost = alice.send(f"{RID}/dave", call("session-propose", sid="ad", namespace="muc"))
    assert alice.receive() == session_info(alice.sid, lost["jsongle"], "unreachable", {"ended": DATE})
    alice.send(f"{RID}/dave", {"action": "session-custom", "namespace": "muc"})
    assert alice.receive() == session_error(alice.sid, 404003, f"Can't transmit message - dave is not in room {RID}")
    # An outsider cannot reach a member: 404002.
    eve = connect(puppet, daemons[0], "eve", "eve")
    eve.send(f"{RID}/alice", call("session-propose", sid="ea"))
    assert eve.receive() == session_error(eve.sid, 404002, f"Can't call - not in room {RID}/alice")
    # The calls end: one by terminate, the other when Carol drops.
    message = alice.send(f"{RID}/bob", call("session-terminate", sid="ab", namespace="muc"))
    assert bob.receive() == relayed(message, f"{RID}/alice", bob, DATED)
    poll(lambda: total_gauges(daemons) == (1, 0), 10, "one conference call left")
    puppet.close("carol")
    for member in (alice, bob):
        assert member.receive() == event(member, "muc", "left", {"member": carol.identity, "rid": RID})
    poll(lambda: total_gauges(daemons) == (0, 0), 10, "no conference call")
    assert_quiet(alice, bob)


def test_a_mesh_in_a_muc_room(daemon_factory, puppet):
    mesh(puppet, [daemon_factory()])


def test_a_mesh_across_two_processes(redis_server, daemon_factory, puppet):
    mesh(puppet, start_cluster(daemon_factory, redis_server, 2))
