"""Rate limits on a task.Clock: the token bucket, 429001, the hard limit, failed CONNECTs."""

from __future__ import annotations

import pytest

from jsongle.config import Config
from jsongle.signaling.ratelimit import FailedAttempts, FloodGuard, RatePolicy, Verdict
from jsongle.socketio.server import ConnectRefused
from tests.test_signaling_unit import SERVER_ID, FakeConnection, Server, pair

A, D, W, C = Verdict.ACCEPT, Verdict.DROP, Verdict.WARN, Verdict.CLOSE


def test_bucket_allows_the_burst_then_the_rate():
    guard = FloodGuard(RatePolicy(per_second=10, burst=5, disconnect_after=0), now=100.0)
    assert [guard.admit(100.0) for _ in range(7)] == [A] * 5 + [W, D]
    assert [guard.admit(100.25) for _ in range(3)] == [A, A, D]  # 2.5 tokens back after 1/4 s
    assert [guard.admit(101.0) for _ in range(10)] == [A] * 5 + [W] + [D] * 4  # a new window warns again
    # Idle long enough: the full burst again, never more.
    assert [guard.admit(200.0) for _ in range(6)] == [A] * 5 + [W]


def test_hard_limit_closes_within_one_window():
    guard = FloodGuard(RatePolicy(per_second=1, burst=1, disconnect_after=3), now=0.0)
    assert [guard.admit(0.0) for _ in range(6)] == [A, W, D, D, C, C]


def test_hard_limit_counts_per_window():
    guard = FloodGuard(RatePolicy(per_second=1, burst=1, disconnect_after=3), now=0.0)
    assert guard.admit(0.0) == A
    # Three excess messages per window, forever: never closed.
    for second in range(1, 50):
        now = float(second) + 0.5
        assert guard.admit(now) == A
        assert [guard.admit(now) for _ in range(3)] == [W, D, D]


def test_failed_attempts_block_per_address_for_a_window():
    attempts = FailedAttempts(limit=3, window=60.0)
    for _ in range(3):
        assert not attempts.blocked("10.0.0.1", 0.0)
        attempts.failed("10.0.0.1", 0.0)
    assert attempts.blocked("10.0.0.1", 59.9)
    assert not attempts.blocked("10.0.0.2", 59.9)
    assert not attempts.blocked("10.0.0.1", 60.0)


def test_failed_attempts_forget_expired_addresses():
    attempts = FailedAttempts(limit=1, window=10.0)
    for n in range(FailedAttempts.PRUNE_ABOVE):
        attempts.failed(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(attempts) == FailedAttempts.PRUNE_ABOVE
    attempts.failed("192.168.0.1", 10.0)
    assert len(attempts) == 1


def test_zero_disables_the_caps():
    attempts = FailedAttempts(limit=0, window=10.0)
    attempts.failed("10.0.0.1", 0.0)
    assert not attempts.blocked("10.0.0.1", 0.0) and len(attempts) == 0
    assert not RatePolicy(per_second=0).enabled


# -- in the application ------------------------------------------------------


class KickableConnection(FakeConnection):
    """A fake connection that records the server closing it."""

    def __init__(self, sid: str) -> None:
        super().__init__(sid)
        self.closed = False

    def disconnect(self, close: bool = False) -> None:
        self.closed = close


class RateServer(Server):
    def connect(self, uid: str) -> FakeConnection:
        connection = KickableConnection(f"sid-{uid}")
        self.app.connect(connection, {})
        hello = connection.take_one()["jsongle"]
        self.send(connection, SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": hello["transaction"], "description": {"uid": uid}})
        assert connection.take_one()["jsongle"]["status"] == "success"
        return connection


def test_flood_gets_429001_once_then_is_closed():
    server = RateServer(Config(rate_limit_per_second=10, rate_limit_burst=20, rate_limit_disconnect=30))
    alice, bob = pair(server)
    bob.take()
    server.clock.advance(10)  # the bucket is full again after the hello and the join
    for n in range(20):
        server.send(alice, "r1", {"action": "session-info", "n": n})
    assert len(bob.take()) == 20
    alice.take()
    for n in range(30):
        server.send(alice, "r1", {"action": "session-info", "n": n})
    (warning,) = alice.take()
    assert warning["jsongle"] == {"action": "session-error", "description": {"errorCode": 429001, "errorDetails": "Too many messages"}}
    assert warning["to"] == alice.sid
    assert bob.take() == [] and not alice.closed
    server.send(alice, "r1", {"action": "session-info"})
    assert alice.closed and alice.take() == []
    assert server.value("jsongle_rate_limited_messages_total", outcome="close") == 1
    assert server.value("jsongle_rate_limited_messages_total", outcome="drop") == 29


def test_other_connections_keep_their_own_budget():
    server = RateServer(Config(rate_limit_per_second=1, rate_limit_burst=5, rate_limit_disconnect=0))
    alice, bob = pair(server)
    server.clock.advance(10)
    for _ in range(50):
        server.send(alice, "r1", {"action": "session-info"})
    bob.take()
    for n in range(5):
        server.send(bob, "r1", {"action": "session-info", "n": n})
    assert [m["jsongle"]["n"] for m in alice.take() if m["jsongle"]["action"] == "session-info"] == list(range(5))


def test_rate_limit_off():
    server = RateServer(Config(rate_limit_per_second=0))
    alice, bob = pair(server)
    for _ in range(1000):
        server.send(alice, "r1", {"action": "session-info"})
    assert len(bob.take()) == 1000


def refused(server: Server, auth: dict, remote: str = "10.0.0.1") -> str:
    connection = FakeConnection("sid-x")
    connection.remote = remote
    with pytest.raises(ConnectRefused) as info:
        server.app.connect(connection, auth)
    return info.value.message


def test_too_many_failed_connects_from_one_address():
    server = Server(Config(app_token="secret", connect_failures_per_ip=3, connect_failure_window=60.0))
    assert [refused(server, auth) for auth in ({}, {"appToken": "x"}, {"appToken": 1})] == [
        "missing appToken",
        "invalid appToken",
        "missing appToken",
    ]
    # Blocked: even the right token is not looked at, for a window.
    assert refused(server, {"appToken": "secret"}) == "too many attempts"
    server.clock.advance(59)
    assert refused(server, {"appToken": "x"}) == "too many attempts"
    # Another address is not affected.
    other = FakeConnection("sid-y")
    other.remote = "10.0.0.2"
    server.app.connect(other, {"appToken": "secret"})
    server.clock.advance(1)
    connection = FakeConnection("sid-z")
    connection.remote = "10.0.0.1"
    server.app.connect(connection, {"appToken": "secret"})
    assert connection.take_one()["jsongle"]["query"] == "session-hello"
    assert server.value("jsongle_connect_errors_total", reason="too many attempts") == 2
