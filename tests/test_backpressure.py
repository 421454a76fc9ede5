"""maxBufferedBytes: a client that does not read is dropped and its buffer freed.

Units on a task.Clock (the budget, the polling queue) and the running daemon
with a WebSocket client that stops reading while its peer floods the room;
the daemon's RSS is sampled throughout and must stay within a stated bound.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from twisted.internet.task import Clock

from jsongle.engineio import packet as eio
from jsongle.engineio.backpressure import OutgoingBudget
from jsongle.engineio.packet import Packet
from jsongle.engineio.polling import PollingTransport
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.session import TRANSPORT_ERROR
from jsongle.randompool import RandomPool, SessionIds
from tests.support.rawclient import RawClient

TOKEN = "test-token"


def test_budget_counts_only_while_the_transport_is_full():
    exceeded = []
    budget = OutgoingBudget(100, lambda: exceeded.append(True))
    budget.sent(1000)  # the transport takes it: nothing waits
    assert budget.waiting == 0
    budget.pauseProducing()
    budget.sent(60)
    budget.resumeProducing()  # drained
    budget.pauseProducing()
    budget.sent(60)
    assert exceeded == []
    budget.sent(41)
    budget.sent(500)
    assert exceeded == [True]  # once


class Closes:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def on_message(self, data: object) -> None:
        pass

    def on_pong(self) -> None:
        pass

    def on_close(self, reason: str) -> None:
        self.reasons.append(reason)


def polling_session(limit: int):
    clock = Clock()
    listener = Closes()

    def on_open(session):
        session.listener = listener

    server = EngineServer(EngineOptions(max_buffered_bytes=limit), clock, on_open, SessionIds(RandomPool()))
    transport = PollingTransport()
    transport.session = server.open(transport, "127.0.0.1", upgrades=[])
    transport.take_queue()  # the open packet
    return clock, server, transport, listener


def test_polling_client_that_does_not_fetch_is_dropped():
    clock, server, transport, listener = polling_session(10_000)
    session = transport.session
    for _ in range(9):
        session.send("x" * 1000)
    assert not session.closed and len(transport.take_queue()) == 9
    for _ in range(11):
        session.send("x" * 1000)
    assert session.closed and listener.reasons == [TRANSPORT_ERROR]
    assert transport.take_queue() == []  # freed
    assert server.find(session.sid) is None and len(server) == 0
    assert clock.getDelayedCalls() == []
    session.send("more")  # after the end: nothing queued
    assert not transport.has_queued


def test_polling_client_that_fetches_is_not_dropped():
    _, _, transport, listener = polling_session(10_000)
    session = transport.session
    for _ in range(100):
        session.send("x" * 1000)
        assert transport.take_queue() == [Packet(eio.MESSAGE, "x" * 1000)]
    assert not session.closed and listener.reasons == []


def test_polling_text_sent_as_utf8_is_queued_as_text_and_counted():
    _, _, transport, listener = polling_session(10_000)
    session = transport.session
    session.send_text("é".encode() * 10)
    assert transport.take_queue() == [Packet(eio.MESSAGE, "é" * 10)]
    for _ in range(11):
        session.send_text(b"x" * 1000)
    assert session.closed and listener.reasons == [TRANSPORT_ERROR]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# What the test floods and what the daemon may grow by meanwhile.
MESSAGE_BYTES = 400_000
MESSAGES = 100  # 40 MB: far more than the budget plus the kernel's socket buffers
RSS_BOUND_KIB = 48 * 1024


def test_websocket_client_that_does_not_read_is_dropped(daemon_factory):
    daemon = daemon_factory(
        {"maxBufferedBytes": 262144, "rateLimitPerSecond": 0, "pingInterval": 120000, "maxConcurrentUsers": 10}
    )
    flooder = RawClient(daemon.ws_port)
    sleeper = RawClient(daemon.ws_port, rcvbuf=4096)
    try:
        flooder.hello(TOKEN, "flooder")
        sleeper.hello(TOKEN, "sleeper")
        flooder.join("r1")
        sleeper.join("r1")
        before = rss_kib(daemon.pid)
        peak = before
        blob = "x" * MESSAGE_BYTES
        left = None
        # The sleeper never reads again; the flooder keeps sending call messages
        # (relayed, no answer to the sender) and watches for the sleeper leaving.
        flooder.ws.settimeout(0.05)
        for n in range(MESSAGES):
            flooder.send("r1", {"action": "session-info", "n": n, "description": {"blob": blob}})
            peak = max(peak, rss_kib(daemon.pid))
            try:
                frame = flooder.recv()
            except Exception:
                continue
            if '"left"' in frame:
                left = frame
                break
        flooder.ws.settimeout(10)
        if left is None:
            left = flooder.next_event(lambda m: m["jsongle"].get("event") == "left")
        assert '"uid":"sleeper"' in str(left).replace(" ", "").replace("'", '"')
        daemon.wait_for_line(r"dropping \S+: the client does not read", timeout=10)
        peak = max(peak, rss_kib(daemon.pid))
        growth = peak - before
        print(f"RSS before {before} KiB, peak {peak} KiB, growth {growth} KiB (bound {RSS_BOUND_KIB} KiB)")
        assert growth < RSS_BOUND_KIB
        # The flooder's session is intact: alone now, a call message is unreachable.
        flooder.send("r1", {"action": "session-propose", "sid": "c1"})
        info = flooder.next_event(lambda m: m["jsongle"]["action"] == "session-info")
        assert info["jsongle"]["reason"] == "unreachable"
        assert sleeper.closed_by_server(timeout=10)
    finally:
        flooder.close()
        sleeper.close()
    assert wait_for_stats(daemon, users_count=0.0, conferences_count=0.0)


def wait_for_stats(daemon, timeout: float = 10.0, **expected: float) -> bool:
    """Poll GET /stats until it shows ``expected`` (a deadline, no fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(daemon.rest_url + "/stats", timeout=10) as response:
            stats = json.loads(response.read())
        if all(stats.get(name) == value for name, value in expected.items()):
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"stats {stats} never showed {expected}")
        time.sleep(0.05)
