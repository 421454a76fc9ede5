"""Every way a connection ends leaves nothing behind, and its room hears ``left``.

The whole stack (Engine.IO, Socket.IO, the JSONgle application, rooms,
metrics) is built by ``tap.Signaling`` on a task.Clock with fake transports,
so "no timer left" is exact: ``clock.getDelayedCalls()`` is empty once both
clients are gone.  The end-to-end twin drives the daemon with real clients and
reads the same counts from /metrics.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any, Callable

import pytest
from twisted.internet.task import Clock

from jsongle.config import Config
from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet
from jsongle.engineio.polling import PollingTransport
from jsongle.engineio.session import TRANSPORT_ERROR, EngineSession
from jsongle.signaling.builtin import builtin_actions, builtin_queries
from jsongle.signaling.handlers import HandlerSet
from jsongle.tap import Signaling
from tests.support.rawclient import RawClient

SERVER_ID = "jsongle-server"
TOKEN = "test-token"


class FakeTransport:
    """Carries a session; records frames and the server closing it."""

    name = "websocket"

    def __init__(self) -> None:
        self.frames: list[Packet] = []
        self.closed = False

    def send(self, packets: list[Packet]) -> None:
        self.frames.extend(packets)

    def send_text(self, message: bytes) -> None:
        self.frames.append(Packet(eio.MESSAGE, message.decode("utf-8")))

    def close(self, notify: bool = True) -> None:
        self.closed = True

    def jsongle(self) -> list[dict[str, Any]]:
        """JSONgle messages received since the last call."""
        frames, self.frames = self.frames, []
        found = []
        for frame in frames:
            if frame.type == eio.MESSAGE and isinstance(frame.data, str) and frame.data.startswith("2["):
                name, message = json.loads(frame.data[1:])
                if name == "jsongle":
                    found.append(message)
        return found


class Stack:
    def __init__(self, transport_class: Callable[[], Any] = FakeTransport, **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        settings = {"app_token": TOKEN, "rate_limit_per_second": 5, "rate_limit_burst": 10, "rate_limit_disconnect": 5, **config}
        self.signaling = Signaling(Config(**settings), self.clock, HandlerSet(builtin_queries(), builtin_actions()))
        self.transport_class = transport_class

    def client(self, uid: str, rid: str) -> tuple[EngineSession, Any]:
        transport = self.transport_class()
        session = self.signaling.engine.open(transport, "10.0.0.1", upgrades=[])
        if isinstance(transport, PollingTransport):
            transport.session = session
        session.receive(Packet(eio.MESSAGE, "0" + json.dumps({"appToken": TOKEN})))
        hello = self.messages(transport)[-1]
        self.emit(session, {"to": SERVER_ID, "jsongle": {"action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"], "description": {"uid": uid}}})
        self.emit(session, {"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": "session-join", "transaction": "t", "description": {"rid": rid}}})
        assert self.messages(transport)[-1]["jsongle"]["action"] == "iq-result"
        return session, transport

    @staticmethod
    def emit(session: EngineSession, message: Any) -> None:
        session.receive(Packet(eio.MESSAGE, "2" + json.dumps(["jsongle", message])))

    @staticmethod
    def messages(transport: Any) -> list[dict[str, Any]]:
        if isinstance(transport, PollingTransport):
            fake = FakeTransport()
            fake.frames = transport.take_queue()
            return fake.jsongle()
        return transport.jsongle()

    def counts(self) -> dict[str, float]:
        stats = self.signaling.metrics.stats()
        registry = self.signaling.metrics.registry
        return {
            "users_count": stats["users_count"],
            "conferences_count": stats["conferences_count"],
            "jsongle_engine_sessions": registry.get_sample_value("jsongle_engine_sessions"),
        }


def end_by_client_close(stack: Stack, session: EngineSession, transport: Any) -> None:
    session.receive(Packet(eio.CLOSE))


def end_by_ping_timeout(stack: Stack, session: EngineSession, transport: Any) -> None:
    """Also what a half-open TCP connection comes to: no pong ever."""
    other = stack.signaling.engine
    options = other.options
    # Bob keeps answering; Alice does not.
    for _ in range(2):
        stack.clock.advance(options.ping_interval / 1000.0)
        for s in other:
            if s is not session:
                s.receive(Packet(eio.PONG))
    stack.clock.advance(options.ping_timeout / 1000.0)


def end_by_transport_error(stack: Stack, session: EngineSession, transport: Any) -> None:
    session.transport_lost(transport, TRANSPORT_ERROR)


def end_by_parse_error(stack: Stack, session: EngineSession, transport: Any) -> None:
    session.receive(Packet(eio.MESSAGE, "2not json"))


def end_by_flood_kick(stack: Stack, session: EngineSession, transport: Any) -> None:
    for _ in range(30):
        if session.closed:
            break
        stack.emit(session, {"to": "r1", "jsongle": {"action": "session-info"}})


def end_by_server_shutdown(stack: Stack, session: EngineSession, transport: Any) -> None:
    stack.signaling.socketio.shutdown([session])


ENDINGS = [end_by_client_close, end_by_ping_timeout, end_by_transport_error, end_by_parse_error, end_by_flood_kick, end_by_server_shutdown]


@pytest.mark.parametrize("end", ENDINGS, ids=lambda f: f.__name__[7:])
def test_every_ending_leaves_nothing_behind(end):
    stack = Stack()
    alice, alice_transport = stack.client("alice", "r1")
    bob, bob_transport = stack.client("bob", "r1")
    stack.messages(alice_transport)
    end(stack, alice, alice_transport)
    assert alice.closed and alice.listener is None
    left = [m for m in stack.messages(bob_transport) if m["jsongle"].get("event") == "left"]
    assert [m["jsongle"]["description"] for m in left] == [{"member": {"uid": "alice"}, "rid": "r1"}]
    assert stack.counts() == {"users_count": 1, "conferences_count": 1, "jsongle_engine_sessions": 1}
    bob.receive(Packet(eio.CLOSE))
    assert stack.counts() == {"users_count": 0, "conferences_count": 0, "jsongle_engine_sessions": 0}
    assert stack.clock.getDelayedCalls() == []
    assert len(stack.signaling.local) == 0


def test_polling_client_that_does_not_fetch_leaves_nothing_behind():
    stack = Stack(PollingTransport, max_buffered_bytes=4096, rate_limit_per_second=0)
    alice, alice_transport = stack.client("alice", "r1")
    bob, bob_transport = stack.client("bob", "r1")
    for _ in range(20):  # Alice never fetches
        stack.emit(bob, {"to": "r1", "jsongle": {"action": "session-info", "description": {"pad": "x" * 500}}})
    assert alice.closed
    assert not alice_transport.has_queued
    left = [m for m in stack.messages(bob_transport) if m["jsongle"].get("event") == "left"]
    assert len(left) == 1
    bob.receive(Packet(eio.CLOSE))
    stack.clock.advance(60)  # the closing polling session lingers for one last GET, then goes
    assert stack.counts() == {"users_count": 0, "conferences_count": 0, "jsongle_engine_sessions": 0}
    assert stack.clock.getDelayedCalls() == []


# -- the same against the daemon ---------------------------------------------


def metric_values(daemon) -> dict[str, float]:
    with urllib.request.urlopen(daemon.rest_url + "/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    values = {}
    for name in ("users_count", "conferences_count", "jsongle_engine_sessions"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, name
        values[name] = float(match.group(1))
    return values


def wait_for_empty(daemon, timeout: float = 15.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    empty = {"users_count": 0.0, "conferences_count": 0.0, "jsongle_engine_sessions": 0.0}
    while True:
        values = metric_values(daemon)
        if values == empty or time.monotonic() > deadline:
            return values
        time.sleep(0.05)


def test_daemon_is_empty_after_every_kind_of_ending(daemon_factory, puppet):
    daemon = daemon_factory(
        {"pingInterval": 300, "pingTimeout": 300, "rateLimitPerSecond": 5, "rateLimitBurst": 10, "rateLimitDisconnect": 5}
    )
    from tests.test_protocol_e2e import connect, join

    watcher = connect(puppet, daemon, "watcher", "watcher")
    join(watcher, "#muc#all", "muc-join")
    clients = []
    for name in ("closes", "stops_ponging", "floods", "garbage"):
        client = connect(puppet, daemon, name, name)
        join(client, "#muc#all", "muc-join", members=(watcher, *clients))
        clients.append(client)
    abrupt = RawClient(daemon.ws_port)
    abrupt.hello(TOKEN, "abrupt")
    abrupt.join("#muc#all", "muc-join")

    puppet.close("closes")
    puppet.stop_pong("stops_ponging")
    for _ in range(30):
        clients[2].send("#muc#all", {"action": "session-info", "namespace": "muc"})
    puppet.raw("garbage", "42not json")
    abrupt.ws.sock.close()  # TCP gone without a close frame

    gone = set()
    while len(gone) < 5:
        message = watcher.receive()
        if message["jsongle"].get("event") == "left":
            gone.add(message["jsongle"]["description"]["member"]["uid"])
    assert gone == {"closes", "stops_ponging", "floods", "garbage", "abrupt"}
    puppet.close("watcher")
    assert wait_for_empty(daemon) == {"users_count": 0.0, "conferences_count": 0.0, "jsongle_engine_sessions": 0.0}
