"""This process as a node of a cluster: heartbeat, sweeping, resync, gauges.

Every tick the node renews its heartbeat key (it expires after
``nodeTimeout``) and learns the cluster gauges and which nodes have stopped
beating; it then removes those nodes' members from their rooms, announcing
the ``left`` events, and so for parked sessions whose resume window passed.  When Redis comes back after a loss, the node puts its
members back before anything else.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from jsongle.cluster import scripts
from jsongle.cluster.bus import RedisBus
from jsongle.cluster.link import RedisLink
from jsongle.cluster.registry import RedisRoomRegistry
from jsongle.cluster.sessions import RedisSessionPark, is_parked_node


def generated_node_id() -> str:
    """host-pid-random: readable in logs, unique even when a pid is reused."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:40] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterStats:
    """The cluster gauges as of the last heartbeat (read at scrape time)."""

    def __init__(self) -> None:
        self.nodes = 0
        self.users = 0
        self.conferences = 0


class ClusterNode(Service):
    """Runs the Redis link and the heartbeat of one node."""

    log = Logger()

    def __init__(
        self, link: RedisLink, registry: RedisRoomRegistry, bus: RedisBus, park: RedisSessionPark, clock: IReactorTime,
        node_timeout: float, local_users: Callable[[], int], failed: Callable[..., None],
    ) -> None:
        self.link = link
        self.registry = registry
        self.bus = bus
        #: Resumable sessions parked for any node to take over.
        self.park = park
        self.clock = clock
        self.node_id = registry.node_id
        self.node_timeout = node_timeout
        self.local_users = local_users
        #: ``failed(what, error)``: background work that failed (Metrics.failed).
        self._failed = failed
        self.stats = ClusterStats()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._ticking = False
        #: Until Redis is first reached: what it holds under this node id is
        #: from an earlier life of the node (same nodeId, restarted) and goes.
        self._first = True

    @property
    def interval(self) -> float:
        """Heartbeat period: several beats per timeout, at least one a second."""
        return min(1.0, self.node_timeout / 4)

    def startService(self) -> None:
        super().startService()
        address = self.link.address
        self.log.info("cluster node {node} on redis {host}:{port}{tls}{user}", node=self.node_id,
                      host=address.host, port=address.port, tls=" over TLS" if address.tls else "",
                      user=f" as user {address.username}" if address.username else "")
        self.link.start(self)
        self._loop.start(self.interval, now=False)

    def stopService(self) -> Deferred:
        """Leave the cluster cleanly (the clients were disconnected already)."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        done: Deferred = succeed(None)
        if self.link.up:
            done = self.registry.sweep(self.node_id, force=True).addErrback(
                lambda f: self._failed("sweep", f"leaving the cluster: {f.getErrorMessage()}")
            )
        return done.addCallback(lambda _: self.link.stop())

    def received(self, raw: Any) -> None:
        """LinkListener: a message on this node's channel: a room snapshot or a delivery."""
        try:
            envelope = json.loads(raw)
            kind = envelope["t"]
            if kind == "room":
                self.registry.published(envelope)
            elif kind == "msg":
                self.bus.received(envelope)
            else:
                self.park.received(envelope)
        except Exception:
            self.log.failure("bad message on the node channel")

    def link_up(self) -> None:
        """LinkListener: Redis reachable (again)."""
        if self._first:
            self._first = False
            self.log.info("redis reachable: node {node} joins the cluster", node=self.node_id)
            self.registry.sweep(self.node_id, force=True).addErrback(
                lambda f: self._failed("sweep", f"clearing an earlier life of node {self.node_id}: {f.getErrorMessage()}")
            )
        else:
            self.log.info("redis reachable again: resynchronising node {node}", node=self.node_id)
        self.tick()
        self.registry.resync().addErrback(lambda f: self._failed("resync", f.getErrorMessage()))

    def link_down(self) -> None:
        """LinkListener: Redis lost."""
        self.log.warn("redis unreachable: local clients keep relaying, joins answer 503001")

    def tick(self) -> Deferred:
        """Beat, refresh the gauges and sweep the nodes that stopped beating."""
        if not self.link.up or self._ticking:
            return succeed(None)
        self._ticking = True
        ttl = str(int(self.node_timeout * 1000))
        beat = self.link.script(scripts.HEARTBEAT, [], [self.node_id, ttl, str(self.local_users()), secrets.token_hex(8)])
        beat.addCallback(self._beaten)
        beat.addErrback(lambda f: self._failed("heartbeat", f.getErrorMessage()))

        def done(result: Any) -> Any:
            self._ticking = False
            return result

        return beat.addBoth(done)

    def _beaten(self, raw: str) -> Deferred:
        answer = json.loads(raw)
        stats = self.stats
        stats.nodes, stats.users, stats.conferences = answer["nodes"], answer["users"], answer["rooms"]
        self.registry.epoch = answer["epoch"]
        sweeps: Deferred = succeed(None)
        for node in answer.get("dead", ()):
            if node == self.node_id:
                continue
            if is_parked_node(node):
                # A parked session whose resume window passed: it leaves its rooms.
                sweeps.addCallback(lambda _, node=node: self.registry.sweep(node, parked=True).addCallback(
                    lambda results, node=node: self.park.expired(node, len(results)) if results is not None else None
                ))
            else:
                sweeps.addCallback(lambda _, node=node: self.registry.sweep(node))
            sweeps.addErrback(lambda f, node=node: self._failed("sweep", f"node {node}: {f.getErrorMessage()}"))
        return sweeps
