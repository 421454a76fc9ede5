"""What a message for a parked session costs, against a bus copy to a node.

A resumable session is parked in Redis only while it moves between
processes (its client came back elsewhere, or its process drains): a message
for it then runs the APPEND script (the next offset, the packet kept, the
bound checked) instead of one PUBLISH to its node's channel. This measures
both on a throw-away ``redis-server`` on a free port: messages per second
through one connection, and Redis's own CPU per message (from INFO), for an
ICE-sized message.

    .venv/bin/python bench/park.py [--count 20000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jsongle.cluster.bus import RedisBus, node_channel  # noqa: E402
from jsongle.cluster.link import LinkTimeouts, RedisLink  # noqa: E402
from jsongle.cluster.node import ClusterNode  # noqa: E402
from jsongle.cluster.registry import RedisRoomRegistry  # noqa: E402
from jsongle.cluster.sessions import RedisSessionPark  # noqa: E402
from jsongle.config import RedisAddress  # noqa: E402
from jsongle.interfaces import ParkedSession  # noqa: E402
from jsongle.signaling.roomrules import RoomCaps  # noqa: E402
from jsongle.signaling.rooms import RoomMember  # noqa: E402
from tests.support.redis import RedisServer  # noqa: E402

MESSAGE = {
    "id": "m1", "from": "bench-room", "to": "c-bob",
    "jsongle": {"action": "transport-info", "sid": "call-1", "description": {
        "candidate": {"candidate": "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr "
                      "192.168.1.20 rport 46154 generation 0 ufrag EsAw network-cost 999", "sdpMid": "0",
                      "sdpMLineIndex": 0}}},
}


class Announcer:
    def joined(self, *args): pass
    def left(self, *args): pass
    def left_all(self, *args): pass


def redis_cpu(link: RedisLink) -> defer.Deferred:
    def parse(info):
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])
    return link.command("INFO", "cpu").addCallback(parse)


@defer.inlineCallbacks
def measure(port: int, count: int) -> defer.Deferred:
    link = RedisLink(RedisAddress("127.0.0.1", port, 0, None), node_channel("bench"), reactor, reactor,
                     lambda *a: None, LinkTimeouts())
    registry = RedisRoomRegistry(link, "bench", RoomCaps(), Announcer(), 15.0)
    park = RedisSessionPark(link, "bench", 120.0, 1 << 30, 10.0, lambda outcome: None, b'2["jsongle",')
    bus = RedisBus(link, "bench", lambda cid, message: None, park.keep_message)
    node = ClusterNode(link, registry, bus, park, reactor, 15.0, lambda: 0, lambda *a: None)
    node.startService()
    while not link.up:
        yield task.deferLater(reactor, 0.05, lambda: None)
    yield registry.join("bench-room", "room", RoomMember("c-bob", "bob", {}))
    yield park.park(ParkedSession("p1", "c-bob", "/", {}, 1, 0), [], "")
    results = {}
    for name, send in (
        ("bus copy (PUBLISH)", lambda: bus.send("other-node", "c-bob", MESSAGE)),
        ("parked (APPEND script)", lambda: bus.send("~p1", "c-bob", MESSAGE)),
    ):
        cpu0 = yield redis_cpu(link)
        started = time.perf_counter()
        for _ in range(count):
            send()
        yield link.command("PING")  # every command before it has been answered
        elapsed = time.perf_counter() - started
        cpu1 = yield redis_cpu(link)
        results[name] = {"msgs_per_s": round(count / elapsed), "redis_cpu_us_per_msg": round((cpu1 - cpu0) / count * 1e6, 1)}
    yield node.stopService()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000)
    options = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    server = RedisServer(Path(tempfile.mkdtemp(prefix="jsongle-park-bench-"))).start()
    outcome: dict = {}

    def done(result):
        outcome.update(result if isinstance(result, dict) else {"error": str(result)})
        reactor.stop()

    reactor.callWhenRunning(lambda: measure(server.port, options.count).addBoth(done))
    try:
        reactor.run()
    finally:
        server.stop()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
