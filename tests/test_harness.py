"""Tests of the test machinery itself; they need Node but not our server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, merged_config, write_env_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_error_when_nothing_listens(puppet):
    url = f"http://127.0.0.1:{_free_port()}"
    puppet.connect("a", url, reconnection=False, transports=["websocket"])
    line = puppet.next("a", "connect_error", timeout=5)
    assert line["message"]
    puppet.assert_quiet("a", "connect")


def test_bad_commands_are_reported_not_fatal(puppet):
    puppet.send_line("this is not json")
    assert "invalid JSON" in puppet.next(None, "error")["message"]
    puppet.send_line('{"op":"dance","client":"a"}')
    assert "unknown op" in puppet.next(None, "error")["message"]
    puppet.emit("nobody", "jsongle", {})
    assert "unknown client" in puppet.next(None, "error")["message"]
    # Still alive and answering.
    puppet.connect("b", f"http://127.0.0.1:{_free_port()}", reconnection=False)
    assert puppet.next("b", "connect_error", timeout=5)["type"] == "connect_error"


def test_lines_of_other_types_are_kept(puppet):
    url = f"http://127.0.0.1:{_free_port()}"
    puppet.connect("a", url, reconnection=True, reconnectionDelay=10,
                   reconnectionDelayMax=10, reconnectionAttempts=1)
    # Waiting for the attempt must not swallow the connect_error before it.
    assert puppet.next("a", "reconnect_attempt", timeout=5)["attempt"] == 1
    assert puppet.next("a", "connect_error", timeout=5)["type"] == "connect_error"
    puppet.close("a")


def test_next_times_out_with_what_it_saw(puppet):
    with pytest.raises(AssertionError, match="timed out"):
        puppet.next("a", "connect", timeout=0.2)


def test_env_file_defaults_and_overrides(tmp_path: Path):
    path = write_env_file(tmp_path, {"pingInterval": 300, "corsPolicyCredentials": True,
                                     "appToken": None})
    lines = path.read_text().splitlines()
    assert "wsPort=0" in lines and "restPort=0" in lines
    assert "listenAddress=127.0.0.1" in lines
    assert f"logPath={tmp_path / 'jsongle.log'}" in lines
    assert "pingInterval=300" in lines and "corsPolicyCredentials=true" in lines
    assert not any(l.startswith("appToken=") for l in lines)
    assert merged_config(tmp_path)["appToken"] == "test-token"


def test_daemon_command_line(tmp_path: Path):
    env = tmp_path / "x.env"
    command = Daemon.command(env)
    assert command[0] == sys.executable
    assert command[-6:] == ["-n", "--pidfile=", "--logfile=-", "jsongle", "--config", str(env)]
