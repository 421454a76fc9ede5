"""The CPU cost of jsongle's message paths in one process, without sockets.

``loadgen.mjs`` measures the whole server, kernel and generator included, on
a machine whose two cores are shared: its figures move by a fifth from run to
run. This script measures only our code: the real server parts (the HTTP
site, the WebSocket protocol, Engine.IO, Socket.IO, the JSONgle application
and its handlers, the in-memory rooms) are wired as ``twistd jsongle`` wires
them, on a clock of our own (timers in a heap, as the reactor keeps them), and driven with client frames written into
in-memory connections; what they write is collected and checked, not sent.
The figure is CPU time (``time.process_time``) per operation, the best of
five runs.

    .venv/bin/python bench/inprocess.py relay --payload ice --window 32
    .venv/bin/python bench/inprocess.py relay --payload sdp
    .venv/bin/python bench/inprocess.py churn
    .venv/bin/python bench/inprocess.py session

``relay``: one pair in a P2P room (``--pairs N``: N pairs taking turns),
the sender's frames in reads of ``--window`` messages, the copies checked;
per relayed message. ``churn``:
50 clients, each a join and a leave per cycle; per cycle. ``session``: the
upgrade request through Twisted Web, the Engine.IO open, the Socket.IO
CONNECT with the appToken, the hello, a join and the close handshake; per
session. Add ``--resume`` for clients that opt in to connection state
recovery, ``--profile`` for cProfile's 25 costliest functions.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import dataclasses
import heapq
import itertools
import json
import os
import pstats
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.base import DelayedCall  # noqa: E402
from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from jsongle.config import Config  # noqa: E402
from jsongle.signaling.handlers import discover  # noqa: E402
from jsongle.tap import Signaling  # noqa: E402

TOKEN = "bench-token"
PEER = IPv4Address("TCP", "127.0.0.1", 40000)
ICE_CANDIDATE = (
    "candidate:3913046734 1 udp 2122262783 2a01:cb1d:8a3:6f00:9c4e:71ff:fe2b:5d13 54817 typ host "
    "generation 0 ufrag 7Hq3 network-id 2 network-cost 10"
)
SDP_LINE = "a=ssrc:2231627014 msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 2b3c4d5e-6f70-8192-a3b4-c5d6e7f80912\r\n"


class Connection(StringTransport):
    """A server-side TCP connection in memory: writes are kept until taken."""

    def __init__(self) -> None:
        super().__init__(peerAddress=PEER)
        self.protocol: Any = None
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def unregisterProducer(self) -> None:
        self.producer = None

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data


def client_frame(payload: str | bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (text unless ``opcode`` says otherwise)."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    mask = os.urandom(4)
    size = len(data)
    head = bytes((0x80 | opcode,)) + (bytes((0x80 | size,)) if size < 126 else struct.pack("!BH", 0x80 | 126, size))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def server_messages(data: bytes) -> list[str]:
    """The text of every server frame in ``data`` (after an HTTP answer, if any)."""
    if data.startswith(b"HTTP/"):
        data = data.partition(b"\r\n\r\n")[2]
    texts, at = [], 0
    while at < len(data):
        size, at = data[at + 1] & 0x7F, at + 2
        if size == 126:
            size, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif size == 127:
            size, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        texts.append(data[at : at + size].decode("utf-8", "replace"))
        at += size
    return texts


def jsongle_messages(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(text[2:])[1] for text in server_messages(data) if text.startswith("42")]


def event(message: dict[str, Any]) -> bytes:
    return client_frame("42" + json.dumps(["jsongle", message], separators=(",", ":")))


class HeapClock(Clock):
    """A ``task.Clock`` whose timers sit in a heap, as the reactor's do.

    ``task.Clock`` sorts its whole list of timers at every ``callLater`` and
    every call it runs: with the thousands of timers of sessions kept for
    resume, that sorting alone cost more than the sessions themselves.
    """

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._order = itertools.count()

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> DelayedCall:
        call = DelayedCall(self.rightNow + delay, callable, args, kw, self._cancelled, self._push, self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))

    def _cancelled(self, call: DelayedCall) -> None:
        """Left in the heap; skipped when its time comes."""

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [call for _, _, call in self._heap if call.active()]

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        heap = self._heap
        while heap and heap[0][0] <= self.rightNow:
            when, _, call = heapq.heappop(heap)
            if call.cancelled or call.called or call.getTime() != when:
                continue  # cancelled, or reset to a later time (pushed again)
            call.called = 1
            call.func(*call.args, **call.kw)


class Server:
    """The parts ``twistd jsongle`` runs, on a clock we advance."""

    def __init__(self, resume: bool = False) -> None:
        #: Every client's CONNECT opts in to connection state recovery.
        self.resume = resume
        self.config = dataclasses.replace(
            Config(), app_token=TOKEN, max_concurrent_users=100000, rate_limit_per_second=0, listen_address="127.0.0.1"
        )
        self.clock = HeapClock()
        self.signaling = Signaling(self.config, self.clock, discover())
        self.site = self.signaling.site()
        self._ids = itertools.count()

    def turn(self) -> None:
        """End of a reactor turn: held frames are written."""
        self.clock.advance(0)

    def upgrade(self) -> Connection:
        """A WebSocket opened through the HTTP site, as a client's upgrade request opens it."""
        connection = Connection()
        connection.protocol = self.site.buildProtocol(PEER)
        connection.protocol.makeConnection(connection)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        connection.protocol.dataReceived(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode("ascii")
        )
        self.turn()
        return connection

    def send(self, connection: Connection, data: bytes) -> bytes:
        connection.protocol.dataReceived(data)
        self.turn()
        return connection.take()

    def registered(self) -> tuple[Connection, str]:
        """A client through the upgrade, the Socket.IO CONNECT and the hello."""
        connection = self.upgrade()
        connection.take()
        auth = {"appToken": TOKEN, **({"resume": True} if self.resume else {})}
        (hello,) = jsongle_messages(self.send(connection, client_frame("40" + json.dumps(auth))))
        sid = hello["to"]
        answer = {
            "id": f"h{next(self._ids)}", "from": sid, "to": self.config.server_id,
            "jsongle": {"action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"],
                        "description": {"uid": f"user-{sid}", "dn": "Bench"}},
        }
        (ack,) = jsongle_messages(self.send(connection, event(answer)))
        assert ack["jsongle"]["status"] == "success", ack
        return connection, sid

    def query(self, sid: str, query: str, rid: str) -> bytes:
        return event({
            "id": f"q{next(self._ids)}", "from": sid, "to": self.config.server_id,
            "jsongle": {"action": "iq-set", "query": query, "transaction": f"t{next(self._ids)}", "description": {"rid": rid}},
        })


def relay(server: Server, payload: str, window: int, pairs: int = 1) -> tuple[str, Callable[[int], None]]:
    """``pairs`` pairs, each in a P2P room of its own, take turns: the
    sessions' buffers and logs add up as they do in a server with that many
    calls."""
    if payload == "ice":
        action = "transport-info"
        description: dict[str, Any] = {"candidate": {"candidate": ICE_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}}
    else:
        action = "session-initiate"
        description = {"offer": {"type": "offer", "sdp": SDP_LINE * 60}, "media": ["audio", "video"]}
    lanes = []
    for pair in range(pairs):
        (alice, alice_sid), (bob, bob_sid) = server.registered(), server.registered()
        room = f"bench-room-{pair}"
        for connection, sid in ((alice, alice_sid), (bob, bob_sid)):
            (answer,) = jsongle_messages(server.send(connection, server.query(sid, "session-join", room)))
            assert answer["jsongle"]["action"] == "iq-result", answer
        alice.take()
        message = {
            "id": "m1", "from": alice_sid, "to": room,
            "jsongle": {"action": action, "sid": f"call-{pair}", "initiator": alice_sid, "responder": bob_sid,
                        "description": {"ts": 1764064800.123, **description}},
        }
        read = event(message) * window
        copies = jsongle_messages(server.send(alice, read)) + jsongle_messages(bob.take())
        assert [copy["jsongle"]["action"] for copy in copies] == [action] * window, copies[:1]
        lanes.append((alice, bob, read))

    def run(count: int) -> None:
        for _ in range(max(1, count // (window * pairs))):
            for alice, bob, read in lanes:
                alice.protocol.dataReceived(read)
                server.turn()
                alice.written.clear()
                bob.written.clear()

    size = len(lanes[0][2]) // window
    return f"relayed {payload} message ({size}-byte frame, window {window}, {pairs} pair(s))", run


def churn(server: Server, clients: int = 50) -> tuple[str, Callable[[int], None]]:
    loops = []
    for index in range(clients):
        connection, sid = server.registered()
        rid = f"churn-{index}"
        loops.append((connection, server.query(sid, "session-join", rid), server.query(sid, "session-leave", rid)))
    for connection, join, leave in loops[:1]:
        for frame in (join, leave):
            (answer,) = jsongle_messages(server.send(connection, frame))
            assert answer["jsongle"]["action"] == "iq-result", answer

    def run(count: int) -> None:
        for _ in range(max(1, count // clients)):
            for connection, join, _ in loops:
                connection.protocol.dataReceived(join)
            server.turn()
            for connection, _, leave in loops:
                connection.protocol.dataReceived(leave)
            server.turn()
            for connection, _, _ in loops:
                connection.written.clear()

    return f"join/leave cycle ({clients} clients)", run


def session(server: Server) -> tuple[str, Callable[[int], None]]:
    close = client_frame(struct.pack("!H", 1000), opcode=0x8)
    rooms = itertools.count()

    def one() -> None:
        connection, sid = server.registered()
        server.send(connection, server.query(sid, "session-join", f"session-{next(rooms)}"))
        answer = server.send(connection, close)
        assert answer.endswith(b"\x88\x02\x03\xe8"), answer  # the close handshake, code 1000
        connection.protocol.connectionLost(Failure(ConnectionDone()))
        server.turn()

    one()
    assert len(server.signaling.engine) == 0

    def run(count: int) -> None:
        for _ in range(count):
            one()

    return "session (upgrade, connect, hello, join, close)", run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("relay", "churn", "session"))
    parser.add_argument("--payload", choices=("ice", "sdp"), default="ice")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=1, help="relay: pairs taking turns (default 1)")
    parser.add_argument("--count", type=int, help="operations per run (default: about half a second's worth)")
    parser.add_argument("--resume", action="store_true", help="every client connects with resume: true")
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    server = Server(resume=options.resume)
    if options.scenario == "relay":
        what, run = relay(server, options.payload, max(1, options.window), max(1, options.pairs))
        count = options.count or 20000
    elif options.scenario == "churn":
        what, run = churn(server)
        count = options.count or 5000
    else:
        what, run = session(server)
        count = options.count or 1000
    run(count // 10)  # warm up
    if options.profile:
        profile = cProfile.Profile()
        profile.runcall(run, count)
        pstats.Stats(profile).sort_stats("tottime").print_stats(int(os.environ.get("PROFILE_LINES", "25")))
        return
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        run(count)
        best = min(best, time.process_time() - started)
    print(json.dumps({"scenario": options.scenario, "what": what, "operations": count, "us_per_operation": round(best / count * 1e6, 2)}))


if __name__ == "__main__":
    main()
