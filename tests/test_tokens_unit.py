"""Per-user tokens and TURN credentials in the application, with fake connections and a Clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import pytest
from twisted.internet.task import Clock

from jsongle.config import Config
from jsongle.interfaces import ConnectRefused
from jsongle.signaling.builtin import builtin_actions, builtin_queries
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.icequery import IceServersHandler
from jsongle.signaling.tokens import verifier_from_config
from jsongle.signaling.turn import ice_servers_from_config
from tests.support.fakes import FakeConnection, Parts

SERVER_ID = "jsongle-server"
SECRET = "k" * 40
START = 1795514400.25
SELF_CHECK = "process-random-secret"


class Server:
    """The application built as the service builds it, with tokens and TURN from ``config``."""

    def __init__(self, **settings: Any) -> None:
        config = Config(**{"jwt_secret": SECRET, **settings})
        self.clock = Clock()
        self.clock.advance(START)
        handlers = HandlerSet(builtin_queries() + [IceServersHandler()], builtin_actions())
        parts = Parts(
            config, self.clock, handlers, SERVER_ID,
            tokens=verifier_from_config(config), ice_servers=ice_servers_from_config(config), self_check=SELF_CHECK,
        )
        self.metrics = parts.metrics
        self.app = parts.app
        self._n = 0

    def open(self, auth: dict[str, Any], remote: str = "192.0.2.7") -> FakeConnection:
        self._n += 1
        connection = FakeConnection(f"sid{self._n}")
        connection.remote = remote
        self.app.connect(connection, auth)
        return connection

    def refusal(self, auth: dict[str, Any], remote: str = "192.0.2.7") -> str:
        with pytest.raises(ConnectRefused) as info:
            self.open(auth, remote)
        return info.value.message

    def send(self, connection: FakeConnection, to: str, jsongle: dict[str, Any]) -> None:
        self.app.event(connection, "jsongle", [{"id": "m", "from": connection.sid, "to": to, "jsongle": jsongle}], None)

    def hello(self, connection: FakeConnection, description: dict[str, Any]) -> list[dict[str, Any]]:
        hello = connection.take_one()["jsongle"]
        self.send(connection, SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": hello["transaction"], "description": description})
        return [message["jsongle"] for message in connection.take()]

    def join(self, connection: FakeConnection, rid: str, query: str = "session-join") -> dict[str, Any]:
        self.send(connection, SERVER_ID, {"action": "iq-set", "query": query, "transaction": "t", "description": {"rid": rid}})
        return connection.take_one()["jsongle"]


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **claims}, SECRET, algorithm="HS256")


def test_claims_reach_the_member():
    server = Server()
    connection = server.open({"token": token(name="Alice", rooms=["r1"])})
    claims = connection.state.claims
    assert (claims.sub, claims.name, claims.rooms) == ("alice", "Alice", ("r1",))


def test_refusals_count_toward_failed_attempts_and_metrics():
    server = Server(connect_failures_per_ip=2)
    assert server.refusal({}) == "missing token"
    assert server.refusal({"token": "nope"}) == "invalid token"
    assert server.refusal({"token": token()}) == "too many attempts"
    # Another address is not affected.
    server.open({"token": token()}, remote="192.0.2.8")
    sample = server.metrics.registry.get_sample_value
    assert sample("jsongle_connect_errors_total", {"reason": "missing token"}) == 1
    assert sample("jsongle_connect_errors_total", {"reason": "invalid token"}) == 1
    assert sample("jsongle_connect_errors_total", {"reason": "too many attempts"}) == 1


def test_app_token_first():
    server = Server(app_token="app")
    assert server.refusal({"token": token()}) == "missing appToken"
    assert server.refusal({"appToken": "app"}) == "missing token"
    server.open({"appToken": "app", "token": token()})


def test_self_check_secret_stands_in_for_a_token():
    server = Server()
    connection = server.open({"selfCheck": SELF_CHECK})
    assert connection.state.claims is None
    assert server.refusal({"selfCheck": SELF_CHECK[:-1] + "x"}) == "missing token"
    assert server.refusal({"selfCheck": 7}) == "missing token"


def test_hello_uid_must_be_sub():
    server = Server()
    connection = server.open({"token": token("alice")})
    answers = server.hello(connection, {"uid": "bob"})
    assert answers[0]["action"] == "ack" and answers[0]["status"] == "failed"
    assert answers[1] == {"action": "session-error", "description": {"errorCode": 403004, "errorDetails": "uid does not match the token"}}
    assert not connection.state.registered


def test_name_claim_wins_over_the_hellos_dn():
    server = Server()
    connection = server.open({"token": token("alice", name="Alice (verified)")})
    assert server.hello(connection, {"uid": "alice", "dn": "Queen of Hearts"})[0]["status"] == "success"
    assert connection.state.identity == {"uid": "alice", "dn": "Alice (verified)"}
    other = server.open({"token": token("bob")})
    server.hello(other, {"uid": "bob", "dn": "Bob"})
    assert other.state.identity == {"uid": "bob", "dn": "Bob"}


def test_rooms_claim_limits_joins():
    server = Server()
    connection = server.open({"token": token("alice", rooms=["r1", "#muc#team-*"])})
    server.hello(connection, {"uid": "alice"})
    assert server.join(connection, "r1")["action"] == "iq-result"
    assert server.join(connection, "#muc#team-a", "muc-join")["action"] == "iq-result"
    refused = server.join(connection, "r2")
    assert refused["action"] == "iq-error"
    assert refused["description"] == {"errorCode": 403005, "errorDetails": "Not allowed in room r2"}
    assert server.join(connection, "#muc#other", "muc-join")["description"]["errorCode"] == 403005


def test_an_expired_token_does_not_end_the_session():
    """Expiry is checked at connect: the clock (and the token's exp) passing changes nothing after."""
    server = Server(jwt_leeway=0.0)
    connection = server.open({"token": jwt.encode({"sub": "alice", "exp": int(time.time()) + 5}, SECRET, algorithm="HS256")})
    server.hello(connection, {"uid": "alice"})
    server.clock.advance(3600)
    assert server.join(connection, "r1")["action"] == "iq-result"


def credential(username: str, secret: str = "turn-secret") -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_hello_ice_servers_name_the_connection():
    server = Server(turn_secret="turn-secret", turn_uris=("turn:t.example:3478",), stun_uris=("stun:t.example:3478",), turn_ttl=600.0)
    connection = server.open({"token": token()})
    description = connection.take_one()["jsongle"]["description"]
    username = f"{int(START + 600)}:{connection.sid}"
    assert description["iceServers"] == [
        {"urls": ["stun:t.example:3478"]},
        {"urls": ["turn:t.example:3478"], "username": username, "credential": credential(username)},
    ]


def test_hello_without_turn_has_no_ice_servers():
    server = Server(stun_uris=("stun:t.example:3478",))
    assert "iceServers" not in server.open({"token": token()}).take_one()["jsongle"]["description"]


def test_ice_servers_query_names_the_uid():
    server = Server(turn_secret="turn-secret", turn_uris=("turn:t.example:3478",), turn_ttl=600.0)
    connection = server.open({"token": token()})
    server.hello(connection, {"uid": "alice"})
    server.clock.advance(100)
    server.send(connection, SERVER_ID, {"action": "iq-get", "query": "ice-servers", "transaction": "t1"})
    answer = connection.take_one()["jsongle"]
    username = f"{int(START + 700)}:alice"
    assert answer == {
        "action": "iq-result", "query": "ice-servers", "transaction": "t1",
        "description": {"iceServers": [{"urls": ["turn:t.example:3478"], "username": username, "credential": credential(username)}]},
    }


def test_other_iq_get_stays_unsupported():
    server = Server()
    connection = server.open({"token": token()})
    server.hello(connection, {"uid": "alice"})
    server.send(connection, SERVER_ID, {"action": "iq-get", "query": "something-else", "transaction": "t1"})
    answer = connection.take_one()["jsongle"]
    assert answer["action"] == "session-error"
    assert answer["description"]["errorCode"] == 405001
