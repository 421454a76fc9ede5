"""TURN REST credentials (jsongle.signaling.turn) against vectors computed elsewhere."""

from __future__ import annotations

import base64

import pytest

from jsongle.config import Config, ConfigError, load_config
from jsongle.signaling.turn import IceServers, ice_servers_from_config, turn_credential


def b64hex(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode("ascii")


@pytest.mark.parametrize(
    ("secret", "username", "expected"),
    [
        # RFC 2202 §3, HMAC-SHA1 test cases 1 and 2.
        (b"\x0b" * 20, "Hi There", b64hex("b617318655057264e28bc0b6fb378c8ef146be00")),
        (b"Jefe", "what do ya want for nothing?", b64hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")),
        # printf '%s' "1700086400:alice" | openssl dgst -sha1 -hmac north -binary | base64
        (b"north", "1700086400:alice", "SXua5ne/+mDhiHTp0pQJzRO4ESg="),
    ],
)
def test_known_vectors(secret: bytes, username: str, expected: str) -> None:
    assert turn_credential(secret, username) == expected


def test_turn_and_stun() -> None:
    servers = IceServers("north", ("turn:t.example:3478?transport=udp", "turns:t.example:5349"), ("stun:s.example:3478",), 86400.0)
    assert servers.turn
    assert servers.ice_servers("alice", 1700000000.7) == [
        {"urls": ["stun:s.example:3478"]},
        {
            "urls": ["turn:t.example:3478?transport=udp", "turns:t.example:5349"],
            "username": "1700086400:alice",
            "credential": "SXua5ne/+mDhiHTp0pQJzRO4ESg=",
        },
    ]


def test_user_with_a_colon_and_other_characters() -> None:
    servers = IceServers("north", ("turn:t.example",), (), 86400.0)
    (entry,) = servers.ice_servers("bob@example.com", 1700000000)
    # printf '%s' "1700086400:bob@example.com" | openssl dgst -sha1 -hmac north -binary | base64
    assert entry["credential"] == "3akDDp1WbBaOgRE5lLVn/OadwA4="
    assert entry["username"] == "1700086400:bob@example.com"


def test_stun_only_and_nothing() -> None:
    assert IceServers("", (), ("stun:s.example",), 60.0).ice_servers("a", 0) == [{"urls": ["stun:s.example"]}]
    assert IceServers("", (), (), 60.0).ice_servers("a", 0) == []
    assert not IceServers("", (), ("stun:s.example",), 60.0).turn


def test_fresh_lists() -> None:
    """Each call builds a new list: a caller changing one changes no other."""
    servers = IceServers("north", ("turn:t.example",), ("stun:s.example",), 60.0)
    first = servers.ice_servers("a", 0)
    first[0]["urls"].append("x")
    assert servers.ice_servers("a", 0)[0] == {"urls": ["stun:s.example"]}


def test_secret_not_in_repr() -> None:
    assert "north" not in repr(IceServers("north", ("turn:t.example",), (), 60.0))


def test_from_config() -> None:
    config, _ = load_config(
        None,
        {"turnSecret": "north", "turnUris": "turn:127.0.0.1:3478?transport=udp, turns:t.example:5349", "stunUris": "stun:127.0.0.1:3478", "turnTtl": "1h"},
    )
    servers = ice_servers_from_config(config)
    assert servers.turn_uris == ("turn:127.0.0.1:3478?transport=udp", "turns:t.example:5349")
    assert servers.stun_uris == ("stun:127.0.0.1:3478",)
    assert servers.ice_servers("u", 100)[1]["username"] == "3700:u"
    assert "north" not in repr(config)
    assert Config().turn_ttl == 86400.0


def test_half_a_turn_setup() -> None:
    with pytest.raises(ConfigError) as info:
        ice_servers_from_config(Config(turn_secret="north"))
    assert info.value.key == "turnUris"
    with pytest.raises(ConfigError) as info:
        ice_servers_from_config(Config(turn_uris=("turn:t.example",)))
    assert info.value.key == "turnSecret"
    assert not ice_servers_from_config(Config()).turn


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("turnUris", "stun:t.example"),
        ("turnUris", "http://t.example"),
        ("turnUris", "turn:"),
        ("turnUris", "turn:a b"),
        ("stunUris", "turn:t.example"),
        ("turnTtl", "0"),
        ("turnTtl", "soon"),
    ],
)
def test_bad_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {key: value})
    assert info.value.key == key
