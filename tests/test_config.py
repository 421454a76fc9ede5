"""Tests for jsongle.config: pure parsing, no reactor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from jsongle.config import DEFAULT_CONFIG, KEYS, Config, ConfigError, RedisAddress, load_config

REPO_ENV = Path(__file__).resolve().parent.parent / "etc" / "jsongle.env"

NODE_ENV = """\
wsPort=8080
restPort=8081
corsPolicyOrigin=
maxConcurrentUsers=10
maxMembersPerRoom=2
logDefaultLevel=warn
id=jsongle-server
logPath=/tmp/jsongle-server.log
logFilesNumber=3
logFilePeriod=1d
key=./key.pem
cert=./cert.pem
appToken=
multiRoomPrefix="#muc#"
maxMembersPerMultiRoom=10
maxMultiRoomsPerUser=10
useHTTPS=TRUE
"""

FIELD_TYPES = {
    f.name: type(getattr(DEFAULT_CONFIG, f.name)).__name__ for f in dataclasses.fields(Config)
}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "test.env"
    path.write_text(text, encoding="utf-8")
    return str(path)


def key_type(key: str) -> str:
    return FIELD_TYPES[KEYS[key].field]


def test_defaults() -> None:
    config, warnings = load_config(None, {})
    assert config == Config() == DEFAULT_CONFIG
    assert warnings == []
    assert config.ws_port == 8080
    assert config.use_https is False
    assert config.log_file_period == 86400.0
    assert config.multi_room_prefix == "#muc#"


def test_keys_cover_every_field() -> None:
    assert {spec.field for spec in KEYS.values()} == set(FIELD_TYPES)
    assert all(spec.description for spec in KEYS.values())


def test_node_env_loads_unchanged(tmp_path: Path) -> None:
    config, warnings = load_config(write(tmp_path, NODE_ENV), {})
    assert warnings == []
    assert config.use_https is True
    assert config.multi_room_prefix == "#muc#"
    assert config.max_multi_room_per_user == 10
    assert config.log_file_period == 86400.0
    assert config == dataclasses.replace(DEFAULT_CONFIG, use_https=True)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "wsPort=9000\nid=from-file\nlogPath=/a.log\n")
    config, warnings = load_config(
        path, {"wsPort": "9001", "logPath": "/b.log", "PATH": "/usr/bin", "HOME": "/root"}
    )
    assert (config.ws_port, config.server_id, config.log_path) == (9001, "from-file", "/b.log")
    assert warnings == []


def test_environment_alone() -> None:
    config, _ = load_config(None, {"useHTTPS": "yes", "maxMultiRoomsPerUser": "3"})
    assert config.use_https is True
    assert config.max_multi_room_per_user == 3


@pytest.mark.parametrize("key", [k for k in KEYS if key_type(k) in ("int", "float")])
@pytest.mark.parametrize("bad", ["abc", "1.5x", "", "  "])
def test_bad_number_names_key_and_value(tmp_path: Path, key: str, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"{key}='{bad}'\n"), {})
    assert info.value.key == key
    assert info.value.value == bad
    assert key in str(info.value)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("key", [k for k in KEYS if key_type(k) == "int"])
def test_integer_keys_reject_floats_and_negatives(key: str) -> None:
    for bad in ("1.0", "-1", "1e3"):
        with pytest.raises(ConfigError, match=key):
            load_config(None, {key: bad})


@pytest.mark.parametrize("key", [k for k in KEYS if key_type(k) in ("int", "float", "bool")])
def test_key_without_value_is_an_error(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"{key}\n"), {})
    assert info.value.key == key


def test_integer_whitespace_allowed() -> None:
    config, _ = load_config(None, {"maxConcurrentUsers": " 42 "})
    assert config.max_concurrent_users == 42


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("wsPort", "65536"),
        ("restPort", "-1"),
        ("maxConcurrentUsers", "0"),
        ("maxMembersPerRoom", "0"),
        ("maxMembersPerMultiRoom", "0"),
        ("maxMultiRoomPerUser", "0"),
        ("logFilesNumber", "-1"),
        ("pingInterval", "0"),
        ("pingTimeout", "0"),
        ("maxPayload", "0"),
        ("connectTimeout", "0"),
    ],
)
def test_out_of_range(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {key: value})
    assert str(info.value).startswith(f"{key}: {value!r} ")


def test_ports_zero_and_log_files_zero_allowed() -> None:
    config, _ = load_config(None, {"wsPort": "0", "restPort": "0", "logFilesNumber": "0"})
    assert (config.ws_port, config.rest_port, config.log_files_number) == (0, 0, 0)


def test_error_message_format() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"wsPort": "abc"})
    assert str(info.value) == "wsPort: 'abc' is not an integer"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("TRUE", True), ("true", True), ("1", True), ("Yes", True), ("on", True),
     ("FALSE", False), ("false", False), ("0", False), ("no", False), ("Off", False)],
)
def test_booleans(raw: str, expected: bool) -> None:
    config, _ = load_config(None, {"useHTTPS": raw})
    assert config.use_https is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "", "y"])
def test_bad_boolean(raw: str) -> None:
    with pytest.raises(ConfigError, match="useHTTPS") as info:
        load_config(None, {"useHTTPS": raw})
    assert info.value.value == raw


@pytest.mark.parametrize(
    "level", ["trace", "debug", "info", "warn", "warning", "error", "fatal", "critical"]
)
def test_levels_lowercased(level: str) -> None:
    config, _ = load_config(None, {"logDefaultLevel": level.upper()})
    assert config.log_default_level == level


@pytest.mark.parametrize("level", ["loud", "", "warn2"])
def test_bad_level(level: str) -> None:
    with pytest.raises(ConfigError, match="logDefaultLevel"):
        load_config(None, {"logDefaultLevel": level})


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1d", 86400.0), ("12h", 43200.0), ("30m", 1800.0), ("45s", 45.0), ("2w", 1209600.0),
     ("3600", 3600.0), ("1.5", 1.5), (" 1D ", 86400.0)],
)
def test_period(raw: str, seconds: float) -> None:
    config, _ = load_config(None, {"logFilePeriod": raw})
    assert config.log_file_period == seconds


@pytest.mark.parametrize("raw", ["bad", "0", "0d", "-1h", "1y", "d", "inf", "nan", ""])
def test_bad_period(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"logFilePeriod": raw})
    assert info.value.key == "logFilePeriod"
    assert info.value.value == raw


def test_string_keys_may_be_empty_except_id() -> None:
    string_keys = [k for k in KEYS if key_type(k) == "str" and k not in ("id", "logDefaultLevel")]
    config, _ = load_config(None, {k: "" for k in string_keys})
    assert all(getattr(config, KEYS[k].field) == "" for k in string_keys)
    with pytest.raises(ConfigError, match="^id: ''"):
        load_config(None, {"id": ""})


def test_unknown_key_in_file_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "wsport=1234\nwsPort=1235\n")
    config, warnings = load_config(path, {"SOMETHING_ELSE": "x"})
    assert config.ws_port == 1235
    assert warnings == [f"unknown configuration key 'wsport' in {path} (ignored)"]


def test_unparsable_line_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "wsPort=1234\nthis is not a binding\nrestPort=1235\n")
    config, warnings = load_config(path, {})
    assert (config.ws_port, config.rest_port) == (1234, 1235)
    assert warnings == [f"cannot parse line 2 of {path} (ignored)"]


def test_both_spellings_singular_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "maxMultiRoomsPerUser=4\nmaxMultiRoomPerUser=5\n")
    config, warnings = load_config(path, {})
    assert config.max_multi_room_per_user == 5
    assert len(warnings) == 1
    assert "maxMultiRoomPerUser" in warnings[0] and "maxMultiRoomsPerUser" in warnings[0]


def test_environment_spelling_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "maxMultiRoomPerUser=5\n")
    config, _ = load_config(path, {"maxMultiRoomsPerUser": "6"})
    assert config.max_multi_room_per_user == 6


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.env")
    with pytest.raises(ConfigError) as info:
        load_config(missing, {})
    assert info.value.key == "--config"
    assert missing in str(info.value)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_config(str(tmp_path), {})


def test_dollar_is_literal(tmp_path: Path) -> None:
    config, _ = load_config(write(tmp_path, "appToken=a${HOME}b\n"), {})
    assert config.app_token == "a${HOME}b"


def test_app_token_masked() -> None:
    config = Config(app_token="s3cr3t-token")
    for text in (repr(config), str(config), f"{config}"):
        assert "s3cr3t-token" not in text
        assert "app_token='***'" in text
        assert "ws_port=8080" in text
    assert "app_token=''" in repr(Config())


def test_admin_token_masked() -> None:
    config, _ = load_config(None, {"adminToken": "adm1n-s3cr3t"})
    assert config.admin_token == "adm1n-s3cr3t"
    assert "adm1n-s3cr3t" not in repr(config)
    assert "admin_token='***'" in repr(config)
    assert Config().admin_token == ""


def test_shipped_env_matches_defaults() -> None:
    # The shipped file is what `make run` uses: it turns the demo page on.
    config, warnings = load_config(str(REPO_ENV), {})
    assert warnings == []
    assert config == Config(demo=True)


def test_shipped_env_lists_every_key() -> None:
    lines = REPO_ENV.read_text(encoding="utf-8").splitlines()
    present = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert present == set(KEYS)
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"no comment above {line!r}"


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("", None),
        ("redis://127.0.0.1", ("127.0.0.1", 6379, 0, None)),
        ("redis://redis.example:6390/2", ("redis.example", 6390, 2, None)),
        ("redis://:s3cret@10.0.0.5:6379/0", ("10.0.0.5", 6379, 0, "s3cret")),
        ("redis://user:pw@[::1]:7000", ("::1", 7000, 0, "pw", "user")),
        ("rediss://jsongle:p%40ss@redis.example:6380/1", ("redis.example", 6380, 1, "p@ss", "jsongle", True)),
        ("rediss://h", ("h", 6379, 0, None, None, True)),
    ],
)
def test_redis_url(raw: str, address: Any) -> None:
    config, _ = load_config(None, {"redisUrl": raw})
    assert config.redis_address == (None if address is None else RedisAddress(*address))


@pytest.mark.parametrize("raw", ["localhost:6379", "http://h:1", "redis://", "redis://h:port", "redis://h/x"])
def test_bad_redis_url(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"redisUrl": raw})
    assert str(info.value).startswith(f"redisUrl: {raw!r} is not a Redis URL")


def test_redis_password_masked() -> None:
    config, _ = load_config(None, {"redisUrl": "redis://:s3cret@h:6379/0"})
    assert "s3cret" not in repr(config) and "redis://:***@h:6379/0" in repr(config)
    config, _ = load_config(None, {"redisUrl": "rediss://app:s3cret@h:6380"})
    assert "s3cret" not in repr(config) and "rediss://app:***@h:6380" in repr(config)


def test_a_bad_redis_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"redisUrl": "rediss://app:s3cret@h:port"})
    assert "s3cret" not in str(info.value) and "rediss://app:***@h:port" in str(info.value)


def test_redis_ca_file_without_tls_is_warned_about() -> None:
    _, warnings = load_config(None, {"redisUrl": "redis://h", "redisCaFile": "/etc/ssl/redis-ca.pem"})
    assert warnings == ["redisCaFile is set but redisUrl is not rediss:// (TLS): it is not used"]


def test_redis_ca_file_goes_with_the_address() -> None:
    config, _ = load_config(None, {"redisUrl": "rediss://h", "redisCaFile": "/etc/ssl/redis-ca.pem"})
    assert config.redis_address == RedisAddress("h", 6379, 0, None, None, True, "/etc/ssl/redis-ca.pem")


@pytest.mark.parametrize("raw", ["127.0.0.1", "0.0.0.0", "::1", ""])
def test_listen_address(raw: str) -> None:
    assert load_config(None, {"listenAddress": raw})[0].listen_address == raw


@pytest.mark.parametrize("raw", ["not.an.ip", "localhost", "127.0.0.256", "1.2.3"])
def test_bad_listen_address(raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^listenAddress: {raw!r} is not an IP address"):
        load_config(None, {"listenAddress": raw})


@pytest.mark.parametrize("raw", ["a b", "x" * 65, "node/1", "ünï"])
def test_bad_node_id(raw: str) -> None:
    with pytest.raises(ConfigError, match="^nodeId: .* is not a node id"):
        load_config(None, {"nodeId": raw})


def test_node_timeout_is_a_duration() -> None:
    config, _ = load_config(None, {"nodeId": "web-1.a", "nodeTimeout": "2.5s"})
    assert (config.node_id, config.node_timeout) == ("web-1.a", 2.5)
    with pytest.raises(ConfigError, match="^nodeTimeout: '0' must be"):
        load_config(None, {"nodeTimeout": "0"})
