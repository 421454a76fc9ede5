"""Shared fixtures: the Node puppet and the real daemon."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.browser import Browser, why_unavailable
from tests.support.daemon import Daemon
from tests.support.puppet import Puppet
from tests.support.redis import RedisServer
from tests.support.turn import TurnServer

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture
def puppet():
    """A running puppet (tests/js/puppet.js) holding socket.io-client sockets."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("socket.io-client is not installed: run `npm ci` in tests/js")
    p = Puppet.start(JS_DIR)
    yield p
    p.stop()
    if p.stderr():
        print("puppet stderr:\n" + p.stderr())


@pytest.fixture
def daemon_factory(tmp_path):
    """``start(config=None, env=None) -> Daemon``; every daemon is stopped at
    teardown and its output printed (shown by pytest when the test fails)."""
    daemons: list[Daemon] = []

    def start(config=None, env=None, **kwargs) -> Daemon:
        directory = tmp_path / f"daemon{len(daemons) + 1}"
        daemon = Daemon.start(directory, config, env=env, **kwargs)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        code = daemon.stop()
        print(f"--- daemon pid {daemon.pid} exited {code} ---\n{daemon.output()}")


@pytest.fixture
def redis_unstarted(tmp_path):
    """A redis-server on a free port, not started yet (no persistence); stopped at teardown."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package: redis-server); .ci/run installs it")
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_unstarted):
    """A fresh, running redis-server (no persistence) on a free port, stopped at teardown."""
    return redis_unstarted.start()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (tests/support/browser.py); closed at teardown."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    b = Browser.start()
    yield b
    b.stop()
    if b.stderr():
        print("browser driver stderr:\n" + b.stderr())


@pytest.fixture
def turn_factory(tmp_path):
    """``start(secret, config_text=None) -> TurnServer``: coturn on 127.0.0.1 (use-auth-secret, or
    the given turnserver.conf), stopped by PID at teardown."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver is not installed (Debian package: coturn); .ci/run installs it")
    servers: list[TurnServer] = []

    def start(secret: str, config_text: str | None = None) -> TurnServer:
        server = TurnServer(tmp_path / f"turn{len(servers) + 1}", secret, config_text=config_text)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
        print(f"--- turnserver log ---\n{server.log()[-4000:]}")
