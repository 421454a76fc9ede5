"""Per-user tokens (PROTOCOL.md §11) against the running daemon, with stock clients.

socket.io-client (through the puppet) for most, python-socketio for the
key-pair tokens; tokens are signed here with PyJWT and keys made here with
cryptography.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.daemon import run_expecting_failure
from tests.test_protocol_e2e import SERVER_ID, TOKEN, UUID, Client, answer_hello, iq_error, iq_result, session_error
from tests.test_tokens import handmade

SECRET = "a-shared-secret-of-forty-bytes-or-more!!"
JWT_CONFIG = {"jwtSecret": SECRET}


def token(sub: str = "alice", key: Any = SECRET, algorithm: str = "HS256", lifetime: float = 600, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + lifetime, **claims}, key, algorithm=algorithm)


def refusal(puppet: Any, daemon: Any, name: str, auth: dict[str, Any]) -> str:
    puppet.connect(name, daemon.ws_url, auth=auth, reconnection=False, transports=["websocket"])
    return puppet.next(name, "connect_error")["message"]


def connect(puppet: Any, daemon: Any, name: str, jwt_token: str, uid: Optional[str] = None, dn: Optional[str] = None) -> Client:
    """Connect with the appToken and ``jwt_token``; with ``uid``, say hello and expect success."""
    puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN, "token": jwt_token}, reconnection=False)
    client = Client(puppet, name, puppet.next(name, "connect")["id"])
    client.hello = client.receive()
    assert client.hello["jsongle"]["query"] == "session-hello"
    if uid is not None:
        description = {"uid": uid} if dn is None else {"uid": uid, "dn": dn}
        answer_hello(client, client.hello, description)
        ack = client.receive()["jsongle"]
        assert ack == {"action": "ack", "status": "success", "transaction": client.hello["jsongle"]["transaction"]}
        client.uid = uid
    return client


def rest_url(daemon: Any) -> str:
    return f"http://127.0.0.1:{daemon.wait_for_port('rest')}"


def metrics(daemon: Any) -> str:
    with urllib.request.urlopen(rest_url(daemon) + "/metrics", timeout=10) as response:
        return response.read().decode("utf-8")


# -- refusals at CONNECT ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 with the HS256 secret, on purpose
def test_each_refusal_message_and_its_metric(daemon_factory, puppet):
    daemon = daemon_factory({**JWT_CONFIG, "connectFailuresPerIp": 0})
    assert refusal(puppet, daemon, "none", {"appToken": TOKEN}) == "missing token"
    assert refusal(puppet, daemon, "empty", {"appToken": TOKEN, "token": ""}) == "missing token"
    assert refusal(puppet, daemon, "garbage", {"appToken": TOKEN, "token": "not.a.jwt"}) == "invalid token"
    assert refusal(puppet, daemon, "number", {"appToken": TOKEN, "token": 42}) == "invalid token"
    assert refusal(puppet, daemon, "other-key", {"appToken": TOKEN, "token": token(key="b" * 40)}) == "invalid token"
    assert refusal(puppet, daemon, "hs512", {"appToken": TOKEN, "token": token(algorithm="HS512")}) == "invalid token"
    assert refusal(puppet, daemon, "expired", {"appToken": TOKEN, "token": token(lifetime=-120)}) == "token expired"
    assert refusal(puppet, daemon, "early", {"appToken": TOKEN, "token": token(nbf=int(time.time()) + 120)}) == "token expired"
    no_sub = jwt.encode({"exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    assert refusal(puppet, daemon, "no-sub", {"appToken": TOKEN, "token": no_sub}) == "invalid token"
    # The appToken still applies, and is checked first.
    assert refusal(puppet, daemon, "bad-app", {"appToken": "wrong", "token": token()}) == "invalid appToken"
    text = metrics(daemon)
    assert 'jsongle_connect_errors_total{reason="missing token"} 2.0' in text
    assert 'jsongle_connect_errors_total{reason="invalid token"} 5.0' in text
    assert 'jsongle_connect_errors_total{reason="token expired"} 2.0' in text
    connect(puppet, daemon, "ok", token(), uid="alice")


def test_alg_none_and_hs256_forged_with_the_public_key(daemon_factory, puppet, tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(pem)
    daemon = daemon_factory({"jwtPublicKey": key_file, "connectFailuresPerIp": 0})
    now = int(time.time())
    claims = {"sub": "mallory", "exp": now + 600}
    unsigned = handmade({"alg": "none", "typ": "JWT"}, claims)
    forged = handmade({"alg": "HS256", "typ": "JWT"}, claims, lambda data: hmac.new(pem, data, hashlib.sha256).digest())
    assert refusal(puppet, daemon, "none", {"appToken": TOKEN, "token": unsigned}) == "invalid token"
    assert refusal(puppet, daemon, "forged", {"appToken": TOKEN, "token": forged}) == "invalid token"
    connect(puppet, daemon, "rs256", token("mallory", private, "RS256"), uid="mallory")


def test_token_refusals_count_toward_connect_failures(daemon_factory, puppet):
    daemon = daemon_factory({**JWT_CONFIG, "connectFailuresPerIp": 3, "connectFailureWindow": "1h"})
    assert refusal(puppet, daemon, "a", {"appToken": TOKEN}) == "missing token"
    assert refusal(puppet, daemon, "b", {"appToken": TOKEN, "token": "x"}) == "invalid token"
    assert refusal(puppet, daemon, "c", {"appToken": TOKEN, "token": token(lifetime=-120)}) == "token expired"
    # A good token from that address is not even looked at now.
    assert refusal(puppet, daemon, "d", {"appToken": TOKEN, "token": token()}) == "too many attempts"


# -- what the token says -------------------------------------------------------------


def test_uid_must_be_the_tokens_sub(daemon_factory, puppet):
    daemon = daemon_factory(JWT_CONFIG)
    client = connect(puppet, daemon, "a", token("alice"))
    answer_hello(client, client.hello, {"uid": "bob"})
    transaction = client.hello["jsongle"]["transaction"]
    assert client.receive()["jsongle"] == {"action": "ack", "status": "failed", "transaction": transaction}
    assert client.receive() == session_error(client.sid, 403004, "uid does not match the token")
    # Still unregistered: anything else is refused.
    client.iq_set("session-join", {"rid": "r1"})
    assert client.receive() == session_error(client.sid, 403002, "session-hello message was not received or was not complete")
    # The right uid then works on the same connection.
    answer_hello(client, client.hello, {"uid": "alice"})
    assert client.receive()["jsongle"] == {"action": "ack", "status": "success", "transaction": transaction}


def test_name_claim_is_the_members_dn(daemon_factory, puppet):
    daemon = daemon_factory(JWT_CONFIG)
    alice = connect(puppet, daemon, "alice", token("alice", name="Alice from the token"), uid="alice", dn="Not Alice")
    bob = connect(puppet, daemon, "bob", token("bob"), uid="bob", dn="Bob")
    request = alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive() == iq_result(request, {"members": [], "rid": "r1"})
    request = bob.iq_set("session-join", {"rid": "r1"})
    assert bob.receive() == iq_result(request, {"members": [{"uid": "alice", "dn": "Alice from the token"}], "rid": "r1"})
    joined = alice.receive()["jsongle"]
    assert joined["event"] == "joined"
    assert joined["description"]["member"] == {"uid": "bob", "dn": "Bob"}


def test_rooms_claim(daemon_factory, puppet):
    daemon = daemon_factory(JWT_CONFIG)
    alice = connect(puppet, daemon, "alice", token("alice", rooms=["r1", "team-*", "#muc#sales*"]), uid="alice")
    for query, rid in [("session-join", "r1"), ("session-join", "team-blue"), ("muc-join", "#muc#sales-eu")]:
        request = alice.iq_set(query, {"rid": rid})
        assert alice.receive() == iq_result(request, {"members": [], "rid": rid})
    for query, rid in [("session-join", "r2"), ("session-join", "r10"), ("session-join", "team"), ("muc-join", "#muc#support")]:
        request = alice.iq_set(query, {"rid": rid})
        assert alice.receive() == iq_error(request, 403005, f"Not allowed in room {rid}")
    # No rooms claim: any room.
    bob = connect(puppet, daemon, "bob", token("bob"), uid="bob")
    request = bob.iq_set("session-join", {"rid": "anywhere"})
    assert bob.receive() == iq_result(request, {"members": [], "rid": "anywhere"})
    assert 'jsongle_iq_errors_total{code="403005"} 4.0' in metrics(daemon)


def test_open_session_outlives_its_token(daemon_factory, puppet):
    """Expiry is checked at connect only: a call in progress goes on."""
    daemon = daemon_factory({**JWT_CONFIG, "jwtLeeway": "0", "connectFailuresPerIp": 0})
    short = token("alice", lifetime=3)
    alice = connect(puppet, daemon, "alice", short, uid="alice")
    bob = connect(puppet, daemon, "bob", token("bob"), uid="bob")
    for client, members in ((alice, []), (bob, [{"uid": "alice"}])):
        request = client.iq_set("session-join", {"rid": "r1"})
        assert client.receive() == iq_result(request, {"members": members, "rid": "r1"})
    assert alice.receive()["jsongle"]["event"] == "joined"
    # Poll (a connect every 0.5 s) until the server itself refuses the same token as expired.
    deadline = time.monotonic() + 15
    for attempt in range(100):
        name = f"again{attempt}"
        puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN, "token": short}, reconnection=False, transports=["websocket"])
        line = puppet.next(name, where=lambda l: l.get("type") in ("connect", "connect_error"))
        if line["type"] == "connect_error":
            assert line["message"] == "token expired"
            break
        puppet.close(name)
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.5)
    # Alice's session, opened with that token, still talks to Bob.
    text = alice.send("r1", {"action": "session-text", "content": "still here"})
    relayed = bob.receive()
    assert relayed["id"] == text["id"]
    assert relayed["jsongle"]["content"] == "still here"


def test_tokens_never_reach_the_log(daemon_factory, puppet):
    daemon = daemon_factory({**JWT_CONFIG, "logDefaultLevel": "debug"})
    secret_token = token("alice", name="Alice")
    connect(puppet, daemon, "alice", secret_token, uid="alice")
    assert refusal(puppet, daemon, "expired", {"appToken": TOKEN, "token": token(lifetime=-120)}) == "token expired"
    puppet.close("alice")
    daemon.stop()
    logged = daemon.output() + (daemon.log_path.read_text() if daemon.log_path and daemon.log_path.exists() else "")
    assert secret_token not in logged
    assert secret_token.split(".")[1] not in logged
    assert SECRET not in logged


# -- key pairs, with python-socketio -----------------------------------------------


def python_client_connect(url: str, auth: dict[str, Any]) -> tuple[socketio.Client, list[Any]]:
    received: list[Any] = []
    client = socketio.Client(reconnection=False)
    client.on("jsongle", received.append)
    client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)
    return client, received


def wait_for(received: list[Any], predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in received:
            if predicate(message):
                return message
        time.sleep(0.02)
    raise AssertionError(f"nothing matched within {timeout}s: {received!r}")


@pytest.mark.parametrize("family", ["RS256", "ES256"])
def test_public_key_tokens_with_python_socketio(daemon_factory, tmp_path: Path, family: str):
    if family == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    daemon = daemon_factory({"jwtPublicKey": key_file, "jwtIssuer": "https://auth.example", "connectFailuresPerIp": 0})
    good = token("carol", private, family, iss="https://auth.example", name="Carol")
    client, received = python_client_connect(daemon.ws_url, {"appToken": TOKEN, "token": good})
    try:
        hello = wait_for(received, lambda m: m["jsongle"].get("query") == "session-hello")
        transaction = hello["jsongle"]["transaction"]
        client.emit("jsongle", {"id": "1", "from": "carol", "to": SERVER_ID,
                                "jsongle": {"action": "iq-result", "query": "session-hello", "transaction": transaction, "description": {"uid": "carol"}}})
        ack = wait_for(received, lambda m: m["jsongle"].get("action") == "ack")
        assert ack["jsongle"] == {"action": "ack", "status": "success", "transaction": transaction}
        assert ack["id"] == UUID
    finally:
        client.disconnect()
    for bad in (
        token("carol", private, family, iss="https://evil.example"),
        token("carol", SECRET, "HS256", iss="https://auth.example"),
        handmade({"alg": "none"}, {"sub": "carol", "iss": "https://auth.example"}),
    ):
        refused = socketio.Client(reconnection=False)
        errors: list[Any] = []
        refused.on("connect_error", errors.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            refused.connect(daemon.ws_url, auth={"appToken": TOKEN, "token": bad}, transports=["websocket"], wait_timeout=10)
        assert errors == [{"message": "invalid token"}]


# -- start-up errors -----------------------------------------------------------------


def test_bad_key_settings_stop_the_start(tmp_path: Path):
    code, output = run_expecting_failure(tmp_path / "missing", {"jwtPublicKey": tmp_path / "nope.pem"})
    assert code != 0 and "jwtPublicKey" in output and "cannot be read" in output
    private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, output = run_expecting_failure(tmp_path / "confusion", {"jwtPublicKey": key_file, "jwtAlgorithms": "ES256,HS256"})
    assert code != 0 and "algorithm confusion" in output
    code, output = run_expecting_failure(tmp_path / "short", {"jwtSecret": "too-short"})
    assert code != 0 and "jwtSecret" in output and "too-short" not in output


def test_self_check_passes_without_a_user_token(daemon_factory, puppet):
    """GET /tests connects without a per-user token and still scores 100;
    a client that copies its CONNECT without the process's secret does not."""
    import json

    daemon = daemon_factory({**JWT_CONFIG, "connectFailuresPerIp": 0})
    with urllib.request.urlopen(rest_url(daemon) + "/tests", timeout=20) as response:
        assert response.status == 200
        assert json.loads(response.read())["score"] == 100
    assert refusal(puppet, daemon, "copycat", {"appToken": TOKEN, "selfCheck": "guess"}) == "missing token"
