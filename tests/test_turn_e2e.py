"""TURN credentials (PROTOCOL.md §12) from the running daemon, and a real relayed call.

The call: coturn (use-auth-secret) and two headless Chromium pages whose
RTCPeerConnection takes the hello's iceServers with iceTransportPolicy
"relay". It connects and decodes video only through coturn; with a
turnSecret that is not coturn's it does not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import pytest

from tests.support.relay_call import missing_tools, peer, relay_call
from tests.support.turn import allocate
from tests.test_protocol_e2e import SERVER_ID, TOKEN, Client, answer_hello, iq_error, iq_result, session_error

TURN_SECRET = "the-turn-servers-static-auth-secret"
TURN_URIS = "turn:turn.example:3478?transport=udp,turns:turn.example:5349?transport=tcp"


def expected_credential(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def check_turn_entry(entry: dict[str, Any], user: str, ttl: float, secret: str = TURN_SECRET) -> None:
    expiry, _, name = entry["username"].partition(":")
    assert name == user
    assert abs(int(expiry) - (time.time() + ttl)) < 30
    assert entry["credential"] == expected_credential(secret, entry["username"])


def connect(puppet: Any, daemon: Any, name: str, uid: str | None = None) -> Client:
    """Connect, keep the hello (whatever its description) and, with ``uid``, answer it."""
    puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False)
    client = Client(puppet, name, puppet.next(name, "connect")["id"])
    client.hello = client.receive()
    assert client.hello["jsongle"]["query"] == "session-hello"
    if uid is not None:
        answer_hello(client, client.hello, {"uid": uid})
        assert client.receive()["jsongle"]["status"] == "success"
        client.uid = uid
    return client


def ice_servers_query(client: Client) -> dict[str, Any]:
    request = {"action": "iq-get", "query": "ice-servers", "transaction": str(uuid.uuid4())}
    return client.send(SERVER_ID, request)


def test_hello_carries_ice_servers(daemon_factory, puppet):
    daemon = daemon_factory({"turnSecret": TURN_SECRET, "turnUris": TURN_URIS, "stunUris": "stun:turn.example:3478", "turnTtl": "2h"})
    client = connect(puppet, daemon, "a")
    servers = client.hello["jsongle"]["description"]["iceServers"]
    assert servers[0] == {"urls": ["stun:turn.example:3478"]}
    assert servers[1]["urls"] == TURN_URIS.split(",")
    check_turn_entry(servers[1], client.sid, 7200)
    assert len(servers) == 2


def test_hello_without_turn_is_unchanged(daemon_factory, puppet):
    daemon = daemon_factory({"stunUris": "stun:turn.example:3478"})
    client = connect(puppet, daemon, "a")
    assert "iceServers" not in client.hello["jsongle"]["description"]


def test_ice_servers_query(daemon_factory, puppet):
    daemon = daemon_factory({"turnSecret": TURN_SECRET, "turnUris": TURN_URIS})
    client = connect(puppet, daemon, "a")
    request = ice_servers_query(client)
    assert client.receive() == session_error(client.sid, 403002, "session-hello message was not received or was not complete")
    client = connect(puppet, daemon, "b", uid="bob")
    request = ice_servers_query(client)
    answer = client.receive()
    assert answer == iq_result(request, {"iceServers": answer["jsongle"]["description"]["iceServers"]})
    (entry,) = answer["jsongle"]["description"]["iceServers"]
    assert entry["urls"] == TURN_URIS.split(",")
    check_turn_entry(entry, "bob", 86400)


@pytest.mark.parametrize(("config", "expected"), [({"stunUris": "stun:s.example:3478"}, [{"urls": ["stun:s.example:3478"]}]), ({}, [])])
def test_ice_servers_query_without_turn(daemon_factory, puppet, config, expected):
    daemon = daemon_factory(config)
    client = connect(puppet, daemon, "b", uid="bob")
    request = ice_servers_query(client)
    assert client.receive() == iq_result(request, {"iceServers": expected})


def test_ice_servers_is_an_iq_get(daemon_factory, puppet):
    """As an iq-set it is an unknown query, like any other."""
    daemon = daemon_factory({"turnSecret": TURN_SECRET, "turnUris": TURN_URIS})
    client = connect(puppet, daemon, "b", uid="bob")
    request = client.iq_set("ice-servers")
    assert client.receive() == iq_error(request, 404001, "The query 'ice-servers' is not supported")


def test_half_a_turn_setup_stops_the_start(tmp_path):
    from tests.support.daemon import run_expecting_failure

    code, output = run_expecting_failure(tmp_path, {"turnSecret": TURN_SECRET})
    assert code != 0 and "turnUris" in output and TURN_SECRET not in output


def test_hello_credentials_work_on_coturn(daemon_factory, puppet, turn_factory):
    turn = turn_factory(TURN_SECRET)
    daemon = daemon_factory({"turnSecret": TURN_SECRET, "turnUris": turn.uri})
    client = connect(puppet, daemon, "a", uid="alice")
    (entry,) = client.hello["jsongle"]["description"]["iceServers"]
    assert allocate(turn.port, entry["username"], entry["credential"]) == 0
    request = ice_servers_query(client)
    (fresh,) = client.receive()["jsongle"]["description"]["iceServers"]
    assert request["jsongle"]["query"] == "ice-servers"
    assert allocate(turn.port, fresh["username"], fresh["credential"]) == 0


# -- the relayed call ---------------------------------------------------------------


@pytest.fixture
def browser_tools():
    why = missing_tools()
    if why:
        pytest.skip(why)


def test_relayed_call_through_coturn(daemon_factory, turn_factory, browser_tools):
    turn = turn_factory(TURN_SECRET)
    daemon = daemon_factory({"turnSecret": TURN_SECRET, "turnUris": turn.uri})
    auth = {"appToken": TOKEN}
    result = relay_call([peer(daemon.ws_url, "alice", "call-1", auth), peer(daemon.ws_url, "bob", "call-1", auth)], timeout=30)
    assert result["outcome"] == "connected", result
    for side in result["peers"]:
        # The pages used the hello's servers: coturn, with jsongle's credentials.
        (entry,) = side["started"]["iceServers"]
        assert entry["urls"] == [turn.uri]
        stats = side["stats"]
        assert stats["framesDecoded"] > 0
        assert stats["pair"]["local"] == "relay", stats
        assert stats["pair"]["remote"] == "relay", stats
        assert stats["pair"]["localAddress"] == "127.0.0.1"
        assert set(stats["localCandidates"]) == {"relay"}
        assert stats["candidateErrors"] == []
    assert "ALLOCATE processed, success" in turn.log()
    assert "CHANNEL_BIND processed, success" in turn.log() or "SEND processed, success" in turn.log()


def test_relayed_call_fails_with_a_wrong_turn_secret(daemon_factory, turn_factory, browser_tools):
    turn = turn_factory(TURN_SECRET)
    daemon = daemon_factory({"turnSecret": "not-what-coturn-has", "turnUris": turn.uri})
    auth = {"appToken": TOKEN}
    result = relay_call([peer(daemon.ws_url, "alice", "call-2", auth), peer(daemon.ws_url, "bob", "call-2", auth)], timeout=15)
    assert result["outcome"] in ("no-relay", "failed", "timeout"), result
    for side in result["peers"]:
        stats = side["stats"]
        assert stats["framesDecoded"] == 0
        assert "relay" not in stats["localCandidates"]
        assert stats["pair"] is None or stats["pair"]["state"] != "succeeded"
        assert {error["errorCode"] for error in stats["candidateErrors"]} == {401}
