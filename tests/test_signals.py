"""Signals on the running daemon: SIGTERM shuts down in order, SIGHUP
reopens the log file and re-reads the console level."""

from __future__ import annotations

import pytest

import json
import signal
import time

from tests.test_protocol_e2e import connect

# SIGTERM is the normal way to stop the service: after the orderly shutdown
# the process exits 0, not by re-raising the signal as twistd would.
SIGTERM_EXIT = 0


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_sigterm_closes_the_transports_and_exits(daemon_factory, puppet):
    """Each client's Engine.IO transport is closed, as socket.io's shutdown
    does: clients see 'transport close' (not 'io server disconnect', which
    socket.io-client never reconnects after)."""
    daemon = daemon_factory()
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    for client in (alice, bob):
        assert puppet.next(client.name, "disconnect")["reason"] == "transport close"
    assert daemon.wait_exit(timeout=10) == SIGTERM_EXIT
    assert time.monotonic() - started < 10
    lines = daemon.log_path.read_text(encoding="utf-8").splitlines()
    assert lines and daemon.log_path.read_text(encoding="utf-8").endswith("\n")
    last = json.loads(lines[-1])
    assert last["text"] == "stopped"
    assert any("disconnecting 2 session(s)" in json.loads(line)["text"] for line in lines)


@pytest.mark.parametrize("resume", [False, True])
def test_a_client_reconnects_by_itself_to_another_process_after_sigterm(daemon_factory, puppet, resume):
    """A rolling restart behind one address: a stock client with reconnection
    on, connected to a process that gets SIGTERM, comes back by itself to the
    next process and completes a new hello (with resume on too: its pid is
    unknown there, so it starts afresh)."""
    from tests.support.switchproxy import SwitchProxy
    from tests.test_resume_e2e import RECONNECT, answer_hello
    from tests.test_protocol_e2e import TOKEN, Client

    first = daemon_factory()
    second = daemon_factory()
    address = SwitchProxy(first.ws_port)
    try:
        auth = {"appToken": TOKEN, "resume": True} if resume else {"appToken": TOKEN}
        puppet.connect("alice", address.url, auth=auth, **RECONNECT)
        before = Client(puppet, "alice", puppet.next("alice", "connect")["id"])
        answer_hello(before, "alice")
        address.retarget(second.ws_port)  # the next connections reach the second process
        first.signal(signal.SIGTERM)
        assert puppet.next("alice", "disconnect")["reason"] == "transport close"
        assert first.wait_exit(timeout=10) == SIGTERM_EXIT
        back = puppet.next("alice", "connect", timeout=15)
        assert back["id"] != before.sid and back["recovered"] is False
        after = Client(puppet, "alice", back["id"])
        answer_hello(after, "alice")
        assert address.connections.get(second.ws_port, 0) >= 1
        second.wait_for_line(rf"{back['id']} connected from")
    finally:
        address.close()


def test_sighup_reopens_the_log_file(daemon_factory, puppet):
    daemon = daemon_factory({"logDefaultLevel": "warn"})
    path = daemon.log_path
    wait_for(lambda: path.exists() and path.stat().st_size > 0)
    rotated = path.with_name("jsongle.log.old")
    path.rename(rotated)
    # The new console level comes from the config file on SIGHUP.
    env = daemon.env_path.read_text(encoding="utf-8").replace("logDefaultLevel=warn", "logDefaultLevel=info")
    daemon.env_path.write_text(env, encoding="utf-8")
    mark = len(daemon.lines())
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_line(r"SIGHUP: log file reopened, console level info \(was warn\)", start=mark)
    connect(puppet, daemon, "alice", "alice")
    wait_for(lambda: path.exists() and "connected from" in path.read_text(encoding="utf-8"))
    daemon.wait_for_line(r"connected from", start=mark)  # info now reaches the console
    new = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert any(record["text"].startswith("SIGHUP") for record in new)
    old = rotated.read_text(encoding="utf-8")
    assert "connected from" not in old
    assert daemon.returncode is None


# -- the root service with task.Clock --------------------------------------


def test_service_reload_and_bounded_shutdown(tmp_path):
    from twisted.internet.task import Clock
    from twisted.logger import LogPublisher

    from jsongle.config import load_config
    from jsongle.logfile import LogFile
    from jsongle.logs import ConsoleLevel
    from jsongle.signaling.builtin import builtin_actions, builtin_queries
    from jsongle.signaling.handlers import HandlerSet
    from jsongle.tap import JsongleService, Signaling

    env = tmp_path / "jsongle.env"
    env.write_text("logDefaultLevel=warn\n", encoding="utf-8")
    config, _ = load_config(str(env), {})
    clock = Clock()
    signaling = Signaling(config, clock, HandlerSet(builtin_queries(), builtin_actions()))
    path = tmp_path / "jsongle.log"
    logfile = LogFile(str(path), 3600, 3, clock, signaling.metrics.failed)
    console = ConsoleLevel("warn", LogPublisher())
    root = JsongleService(signaling, console, [], logfile, str(env))
    root.startService()
    env.write_text("logDefaultLevel=debug\n", encoding="utf-8")
    root.reload()
    assert console.name == "debug"
    # No session: nothing to wait for.
    stopped = root.stopService()
    fired: list[object] = []
    stopped.addBoth(fired.append)
    assert fired == [None]
    assert logfile.closed and not clock.getDelayedCalls()


class LingeringTransport:
    """A polling-like transport: once closed, its session stays findable
    until the client's next GET, which may never come."""

    name = "polling"

    def __init__(self) -> None:
        self.session = None
        self.sent = []

    def send(self, packets) -> None:
        self.sent.extend(packets)

    def send_text(self, message: bytes) -> None:
        self.sent.append(message)

    def close(self, notify: bool = True) -> None:
        self.session.server.retain(self.session)

    def next_get(self) -> None:
        self.session.server.forget(self.session)


@pytest.mark.parametrize("client_polls", [True, False])
def test_shutdown_waits_for_the_sessions_to_close_and_no_longer(tmp_path, client_polls):
    """The wait ends when the last session is gone (plus a short grace for
    the last frames), and after shutdownTimeout at most."""
    from twisted.internet.task import Clock
    from twisted.logger import LogPublisher

    from jsongle.config import Config
    from jsongle.logs import ConsoleLevel
    from jsongle.signaling.builtin import builtin_actions, builtin_queries
    from jsongle.signaling.handlers import HandlerSet
    from jsongle.tap import JsongleService, Signaling

    clock = Clock()
    signaling = Signaling(Config(shutdown_timeout=2.0), clock, HandlerSet(builtin_queries(), builtin_actions()))
    root = JsongleService(signaling, ConsoleLevel("warn", LogPublisher()), [])
    root.startService()
    transport = LingeringTransport()
    transport.session = signaling.engine.open(transport, "127.0.0.1", [])
    stopped = root.stopService()
    fired: list[object] = []
    stopped.addBoth(fired.append)
    assert fired == [] and len(signaling.engine) == 1
    if client_polls:
        clock.advance(0.05)
        transport.next_get()  # the CLOSE reaches the client: its session is gone
        clock.advance(0.2)
        assert fired == [None]
    else:
        clock.advance(1.9)
        assert fired == []
        clock.advance(0.1)
        assert fired == [None]
    assert not clock.getDelayedCalls()
