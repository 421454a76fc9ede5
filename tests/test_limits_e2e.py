"""Rate limits against the running daemon, with socket.io-client.

A flooding client hears 429001 and is then disconnected while its room
peers keep talking; an address that keeps failing CONNECT is turned away
with "too many attempts" even when it finally has the right token.
"""

from __future__ import annotations

import urllib.request

from tests.test_protocol_e2e import TOKEN, connect, event, join, session_error

# Small numbers so the flood is short: 20 messages at once, then 10 over the limit at most.
FLOOD_LIMITS = {"rateLimitPerSecond": 1, "rateLimitBurst": 20, "rateLimitDisconnect": 10}


def test_flooder_gets_429001_then_is_disconnected_while_its_room_goes_on(daemon_factory, puppet):
    daemon = daemon_factory(FLOOD_LIMITS)
    rid = "#muc#flood"
    mallory = connect(puppet, daemon, "mallory", "mallory")
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    join(mallory, rid, "muc-join")
    join(alice, rid, "muc-join", members=(mallory,))
    join(bob, rid, "muc-join", members=(mallory, alice))
    # Mallory used 2 messages (hello, join) of its burst (and got a token back
    # per second since): about 18 pass, then the flood is cut.
    flood = [mallory.send(rid, {"action": "session-custom", "namespace": "muc", "n": n}) for n in range(40)]
    chat = [alice.send(rid, {"action": "session-text", "namespace": "muc", "n": n}) for n in range(5)]

    assert puppet.next("mallory", "disconnect", timeout=10)["reason"] == "io server disconnect"
    to_mallory = [line["args"][0] for line in puppet.pending("mallory") if line.get("type") == "event"]
    errors = [m for m in to_mallory if m["jsongle"]["action"] == "session-error"]
    assert errors == [session_error(mallory.sid, 429001, "Too many messages")]
    acked = [m["jsongle"]["description"]["mid"] for m in to_mallory if m["jsongle"].get("event") == "ack"]
    admitted = len(acked)
    assert 18 <= admitted < 40 - 11
    assert acked == [m["id"] for m in flood[:admitted]]

    # Bob: the admitted flood messages, all of Alice's chat, and Mallory leaving.
    seen = {"flood": [], "chat": [], "left": []}
    while len(seen["chat"]) < len(chat) or not seen["left"]:
        message = bob.receive()
        jsongle = message["jsongle"]
        if jsongle["action"] == "session-custom":
            seen["flood"].append(jsongle["n"])
        elif jsongle["action"] == "session-text":
            seen["chat"].append(jsongle["n"])
        else:
            assert message == event(bob, "muc", "left", {"member": mallory.identity, "rid": rid})
            seen["left"].append(message)
    assert seen["chat"] == list(range(5))
    assert seen["flood"] == list(range(admitted))
    # The room still works for those who behave.
    text = bob.send(rid, {"action": "session-text", "namespace": "muc"})
    while True:
        received = alice.receive()
        if received["jsongle"].get("action") == "session-text" and received["id"] == text["id"]:
            break


def test_too_many_failed_connects_from_one_address(daemon_factory, puppet):
    daemon = daemon_factory({"connectFailuresPerIp": 3, "connectFailureWindow": "1h"})
    for n, token in enumerate(["wrong", "", "also wrong"]):
        puppet.connect(f"bad{n}", daemon.ws_url, auth={"appToken": token}, reconnection=False)
        assert puppet.next(f"bad{n}", "connect_error")["message"] in ("invalid appToken", "missing appToken")
    # From now on the token is not even checked: the right one is refused too.
    puppet.connect("late", daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False, transports=["websocket"])
    assert puppet.next("late", "connect_error")["message"] == "too many attempts"
    puppet.connect("late2", daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False)
    assert puppet.next("late2", "connect_error")["message"] == "too many attempts"
    stats = daemon_metrics(daemon)
    assert 'jsongle_connect_errors_total{reason="too many attempts"} 2.0' in stats


def daemon_metrics(daemon) -> str:
    with urllib.request.urlopen(daemon.rest_url + "/metrics", timeout=10) as response:
        return response.read().decode("utf-8")


def test_polling_flooder_gets_429001_before_it_is_closed(daemon_factory, puppet):
    """The same as over WebSocket: the 429001, then the disconnect."""
    daemon = daemon_factory(FLOOD_LIMITS)
    puppet.connect("mallory", daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False, transports=["polling"])
    sid = puppet.next("mallory", "connect")["id"]
    hello = puppet.next_jsongle("mallory")
    transaction = hello["jsongle"]["transaction"]
    answer = {"action": "iq-result", "query": "session-hello", "transaction": transaction,
              "description": {"uid": "mallory", "dn": "Mallory"}}
    puppet.emit("mallory", "jsongle", {"id": "h", "from": sid, "to": "jsongle-server", "jsongle": answer})
    assert puppet.next_jsongle("mallory")["jsongle"]["status"] == "success"
    for n in range(40):
        puppet.emit("mallory", "jsongle", {"id": f"m{n}", "from": sid, "to": "jsongle-server",
                                           "jsongle": {"action": "session-custom", "n": n}})
    disconnect = puppet.next("mallory", "disconnect", timeout=10)
    received = [line["args"][0] for line in puppet.pending("mallory") if line.get("type") == "event"]
    errors = [m for m in received if m["jsongle"]["action"] == "session-error"]
    assert session_error(sid, 429001, "Too many messages") in errors, (disconnect, received)
    assert disconnect["reason"] == "io server disconnect"
