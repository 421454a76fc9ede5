"""Starting the daemon: bad configuration stops it by name; TLS works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.daemon import REPO_ROOT, TWISTD_MAIN, run_expecting_failure
from tests.support.tls import write_self_signed

TOKEN = "test-token"


@pytest.mark.parametrize(
    "key, value",
    [("wsPort", "abc"), ("useHTTPS", "maybe"), ("maxConcurrentUsers", "0"), ("pingInterval", "-5")],
)
def test_bad_value_stops_the_start(tmp_path, key, value):
    code, output = run_expecting_failure(tmp_path, {key: value})
    assert code != 0
    assert key in output and repr(value) in output, output
    assert "listening on" not in output


@pytest.mark.parametrize("missing", ["key", "cert"])
def test_https_with_a_missing_file_stops_the_start(tmp_path, missing):
    key, cert = write_self_signed(tmp_path)
    paths = {"key": key, "cert": cert}
    paths[missing] = tmp_path / f"no-such-{missing}.pem"
    code, output = run_expecting_failure(tmp_path / "run", {"useHTTPS": True, **paths})
    assert code != 0
    assert str(paths[missing]) in output, output
    assert "listening on" not in output


def test_https_with_a_garbage_key_stops_the_start(tmp_path):
    _, cert = write_self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    code, output = run_expecting_failure(tmp_path / "run", {"useHTTPS": True, "key": garbage, "cert": cert})
    assert code != 0
    assert str(garbage) in output, output
    assert "listening on" not in output


def test_help_lists_the_config_option():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    result = subprocess.run(
        [sys.executable, "-c", TWISTD_MAIN, "jsongle", "--help"],
        cwd=str(REPO_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


def test_https_serves_socketio_over_tls(tmp_path, daemon_factory, puppet):
    key, cert = write_self_signed(tmp_path / "tls")
    daemon = daemon_factory({"useHTTPS": True, "key": key, "cert": cert})
    url = f"https://127.0.0.1:{daemon.ws_port}"
    puppet.connect("a", url, auth={"appToken": TOKEN}, rejectUnauthorized=False)
    connected = puppet.next("a", "connect")
    # Default transports: polling over https, then the upgrade over wss.
    assert puppet.next("a", "upgrade")["transport"] == "websocket"
    hello = puppet.next_jsongle("a", where=lambda m: m["jsongle"].get("query") == "session-hello")
    assert hello["to"] == connected["id"]
    # WebSocket only: wss straight away.
    puppet.connect("b", url, auth={"appToken": TOKEN}, rejectUnauthorized=False, transports=["websocket"])
    connected = puppet.next("b", "connect")
    assert connected["transport"] == "websocket"
    hello = puppet.next_jsongle("b", where=lambda m: m["jsongle"].get("query") == "session-hello")
    assert hello["to"] == connected["id"]
    assert "useHTTPS=false" not in daemon.output()


# -- every key that names a file, an address or a port ----------------------


def assert_one_line_naming(output: str, key: str, value: object) -> None:
    assert "Traceback" not in output, output
    naming = [line for line in output.splitlines() if f"{key}: {value!r}" in line]
    assert len(naming) == 1, output
    assert "bad configuration" in naming[0]


def occupied_port():
    """A listening socket on 127.0.0.1: its port is in use while it is open."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize(
    "key, value",
    [
        ("logPath", "/nonexistent/dir/x.log"),
        ("listenAddress", "not.an.ip"),
        ("listenAddress", "localhost"),
        ("redisUrl", "redis:/127.0.0.1"),
        ("redisUrl", "rediss://h:port"),
    ],
)
def test_a_path_or_address_that_cannot_be_used_stops_the_start(tmp_path, key, value):
    code, output = run_expecting_failure(tmp_path, {key: value})
    assert code != 0
    assert_one_line_naming(output, key, value)
    assert "listening on" not in output


def test_a_log_path_that_is_a_directory_stops_the_start(tmp_path):
    code, output = run_expecting_failure(tmp_path / "run", {"logPath": tmp_path})
    assert code != 0
    assert_one_line_naming(output, "logPath", str(tmp_path))


def test_a_log_path_that_cannot_be_written_stops_the_start(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # /sys refuses new files even to root, who writes anywhere else.
    path = "/sys/jsongle-test.log" if os.access(locked, os.W_OK) else str(locked / "x.log")
    code, output = run_expecting_failure(tmp_path / "run", {"logPath": path})
    assert code != 0
    assert_one_line_naming(output, "logPath", path)
    assert "cannot be written" in output


def test_an_address_not_on_this_machine_stops_the_start(tmp_path):
    # TEST-NET-1 (RFC 5737): never assigned to an interface here.
    code, output = run_expecting_failure(tmp_path, {"listenAddress": "192.0.2.1"})
    assert code != 0
    assert_one_line_naming(output, "listenAddress", "192.0.2.1")


@pytest.mark.parametrize("key", ["wsPort", "restPort"])
def test_a_port_in_use_stops_the_start(tmp_path, key):
    holder = occupied_port()
    try:
        port = holder.getsockname()[1]
        code, output = run_expecting_failure(tmp_path, {key: port})
    finally:
        holder.close()
    assert code != 0
    assert_one_line_naming(output, key, port)
    assert "already in use" in output


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_redis_ca_file_that_cannot_be_used_stops_the_start(tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    config = {"redisUrl": "rediss://127.0.0.1:1", "redisCaFile": path}
    code, output = run_expecting_failure(tmp_path / "run", config)
    assert code != 0
    assert_one_line_naming(output, "redisCaFile", str(path))


@pytest.mark.parametrize("missing", ["key", "cert"])
def test_a_missing_key_or_cert_is_one_line(tmp_path, missing):
    key, cert = write_self_signed(tmp_path)
    paths = {"key": str(key), "cert": str(cert)}
    paths[missing] = str(tmp_path / "absent.pem")
    code, output = run_expecting_failure(tmp_path / "run", {"useHTTPS": True, **paths})
    assert code != 0
    assert_one_line_naming(output, missing, paths[missing])


def test_a_bad_redis_url_never_shows_its_password(tmp_path):
    code, output = run_expecting_failure(tmp_path, {"redisUrl": "redis://user:pw-s3cret@h:port"})
    assert code != 0
    assert "pw-s3cret" not in output
    assert_one_line_naming(output, "redisUrl", "redis://user:***@h:port")
