"""The credentials jsongle hands out, tried on a real coturn (TURN Allocate over UDP)."""

from __future__ import annotations

import time

from jsongle.signaling.turn import IceServers
from tests.support.turn import allocate

SECRET = "coturn-shared-secret"


def credentials(turn, secret: str, user: str, now: float, ttl: float = 3600.0) -> tuple[str, str]:
    (entry,) = IceServers(secret, (turn.uri,), (), ttl).ice_servers(user, now)
    assert entry["urls"] == [turn.uri]
    return entry["username"], entry["credential"]


def test_coturn_accepts_our_credentials(turn_factory) -> None:
    turn = turn_factory(SECRET)
    assert allocate(turn.port, *credentials(turn, SECRET, "alice", time.time())) == 0
    assert allocate(turn.port, *credentials(turn, SECRET, "user:with:colons@example", time.time())) == 0


def test_coturn_refuses_a_wrong_secret(turn_factory) -> None:
    turn = turn_factory(SECRET)
    assert allocate(turn.port, *credentials(turn, "not-the-secret", "alice", time.time())) == 401


def test_coturn_refuses_expired_credentials(turn_factory) -> None:
    turn = turn_factory(SECRET)
    assert allocate(turn.port, *credentials(turn, SECRET, "alice", time.time() - 7200)) == 401


def test_coturn_refuses_a_tampered_username(turn_factory) -> None:
    """The user part is signed: another uid with the same password is refused."""
    turn = turn_factory(SECRET)
    username, credential = credentials(turn, SECRET, "alice", time.time())
    assert allocate(turn.port, username.replace("alice", "mallory"), credential) == 401
