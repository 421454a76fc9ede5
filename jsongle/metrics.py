"""Metrics on an injected Prometheus registry (never the global one).

The business set keeps the names of the original JSONgle-Server (``users_count``,
``recv_total``...); operator metrics live under the ``jsongle_`` prefix.  On
the hot path the application only adds to plain numbers (byte counts,
relayed copies, the latency histogram) that are read at scrape time, so a
message costs no lock and no dict built for metrics.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from twisted.logger import Logger

_log = Logger(namespace="jsongle.failures")

#: The names ``GET /stats`` answers with, in the order of PROTOCOL §8.
BUSINESS = (
    "users_count",
    "users_total",
    "conferences_count",
    "conferences_total",
    "duration_total",
    "recv_total",
    "sent_total",
    "p2p_total",
    "p2p_failed_total",
    "p2p_duration_total",
    "messages_total",
    "reactions_total",
    "p2p_count",
)

#: The ones that count things: ``GET /stats`` answers them as integers.
COUNTS = frozenset(BUSINESS) - {"duration_total", "recv_total", "sent_total", "p2p_duration_total"}

TRANSPORTS = ("polling", "websocket")

#: Relay latency inside the server: 0.1 ms .. 100 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class _Traffic:
    """Exposes ``recv``/``sent`` (MB) from byte counts kept as plain integers."""

    def __init__(self, metrics: "Metrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("recv", "MB of JSONgle traffic received", value=self._metrics.received_bytes / 1e6)
        yield CounterMetricFamily("sent", "MB of JSONgle traffic sent", value=self._metrics.sent_bytes / 1e6)


class _Labelled:
    """A labelled metric whose children are cached by label value."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric: Counter) -> None:
        self.metric = metric
        self._children: dict[str, Counter] = {}

    def __call__(self, value: str) -> Counter:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self.metric.labels(value)
        return child


class _Count:
    """A counter child that is a plain number: ``inc`` takes no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class _LabelledCount:
    """A labelled counter for the per-message path, read at scrape time.

    The reactor is single-threaded, so its children are plain numbers
    instead of prometheus-client's locked values.
    """

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self._children: dict[str, _Count] = {}

    def __call__(self, value: str) -> _Count:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = _Count()
        return child

    def add(self, value: str, amount: float) -> None:
        """``self(value).inc(amount)`` in one call (the relay path counts every message)."""
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = _Count()
        child.value += amount

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, child in list(self._children.items()):
            family.add_metric([value], child.value)
        yield family


class _Histogram:
    """A histogram for the per-message path: a bisect and two additions."""

    __slots__ = ("name", "documentation", "bounds", "_counts", "_sum")

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(bounds))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self._counts):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self._sum)


class _PlainCounter:
    """A labelled counter exposed under its bare name, without ``_total``.

    The original server names one of its counters
    ``technical_all_paths_requests``; prometheus-client would append
    ``_total`` to a :class:`Counter` of that name.
    """

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self._values: dict[str, float] = {}

    def inc(self, value: str) -> None:
        self._values[value] = self._values.get(value, 0) + 1

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "counter")]

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.documentation, "counter")
        for value, count in list(self._values.items()):
            family.add_sample(self.name, {self.label: value}, count)
        yield family


class _WithoutCreated:
    """A view of a registry that leaves out the ``*_created`` samples.

    prometheus-client doubles every counter, summary and histogram with one;
    the original server has none.  Filtering here keeps the library's
    process-wide switch (``disable_created_metrics``) untouched.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            kept = [sample for sample in family.samples if not sample.name.endswith("_created")]
            if len(kept) != len(family.samples):
                family.samples = kept
            yield family


class RestTraffic:
    """The REST API's own traffic, under the original's ``technical_*`` names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("technical_all_requests", "Number of requests made", ["method"], registry=registry)
        self.paths = _PlainCounter("technical_all_paths_requests", "Paths taken in the app", "path")
        registry.register(self.paths)
        self.metrics_requests = Counter(
            "technical_metrics_requests", "number of GET /metrics requests", registry=registry
        )
        self.response_time = Summary(
            "technical_response_time_ms", "Response time in millis", ["method", "path", "status"], registry=registry
        )

    def requested(self, method: str, path: str) -> None:
        """A request other than ``/metrics`` arrived (the original leaves those out)."""
        self.requests.labels(method).inc()
        self.paths.inc(path)

    def answered(self, method: str, path: str, status: int, milliseconds: float) -> None:
        self.response_time.labels(method, path, str(status)).observe(milliseconds)


class Metrics:
    """The JSONgle-Server metric set, under its original names, and operator metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.users_count = Gauge("users_count", "Connected clients", registry=registry)
        self.users = Counter("users", "Clients connected since start", registry=registry)
        #: Non-empty rooms: a callback on the room registry (see ``watch_rooms``).
        self.conferences_count = Gauge("conferences_count", "Non-empty rooms", registry=registry)
        self.conferences = Counter("conferences", "Rooms created since start", registry=registry)
        self.duration = Counter("duration", "Connected minutes, all users", registry=registry)
        #: Bytes of JSONgle traffic (Socket.IO packets of the jsongle event), exposed in MB.
        self.received_bytes = 0
        self.sent_bytes = 0
        registry.register(_Traffic(self))
        self.p2p = Counter("p2p", "P2P calls accepted", registry=registry)
        #: Calls in progress, from session-accept to their end (jsongle.signaling.calls).
        self.p2p_count = Gauge("p2p_count", "Number of simultaneous p2p calls", registry=registry)
        self.conference_calls = Gauge(
            "jsongle_conference_calls", "Member-to-member calls in progress in MUC rooms", registry=registry
        )
        self.p2p_failed = Counter("p2p_failed", "P2P calls reported failed (ice-failed)", registry=registry)
        self.p2p_duration = Counter("p2p_duration", "Reported P2P call durations", registry=registry)
        self.messages = Counter("messages", "MUC text messages", registry=registry)
        self.reactions = Counter("reactions", "MUC reactions", registry=registry)
        self.rest = RestTraffic(registry)
        # -- operator metrics --
        self.connections = Gauge(
            "jsongle_connections", "Connected clients by Engine.IO transport", ["transport"], registry=registry
        )
        self.relayed = _LabelledCount("jsongle_relayed_messages", "Copies relayed to room members, by action", "action")
        registry.register(self.relayed)
        self.iq_errors = _Labelled(Counter("jsongle_iq_errors", "iq-error answers, by errorCode", ["code"], registry=registry))
        self.connect_errors = _Labelled(
            Counter("jsongle_connect_errors", "Refused Socket.IO connections, by reason", ["reason"], registry=registry)
        )
        #: Engine.IO sessions alive in this process (lingering ones too): leaks show here.
        self.engine_sessions = Gauge(
            "jsongle_engine_sessions", "Engine.IO sessions held by the server, closed ones still lingering included", registry=registry
        )
        self.rate_limited = _Labelled(
            Counter(
                "jsongle_rate_limited_messages",
                "Messages over the rate limit, by what was done (warn, drop, close)",
                ["outcome"],
                registry=registry,
            )
        )
        self.failures = _Labelled(
            Counter(
                "jsongle_background_failures",
                "Background work that failed, by what (publish, heartbeat, sweep, resync, log write)",
                ["what"],
                registry=registry,
            )
        )
        self.resumes = _Labelled(
            Counter(
                "jsongle_resumes",
                "Connection state recovery: sessions taken back (recovered), away past their window "
                "(expired), resumes with no session to take (unknown) or not let in (refused)",
                ["outcome"],
                registry=registry,
            )
        )
        for outcome in ("recovered", "expired", "unknown", "refused"):
            self.resumes(outcome)  # every outcome shows, at 0 until it happens
        self.sessions_away = Gauge(
            "jsongle_sessions_away", "Resumable sessions whose transport was lost, within their window", registry=registry
        )
        self.relay_latency = _Histogram(
            "jsongle_relay_latency_seconds",
            "From receiving a message to having handed all its copies to the transports",
            LATENCY_BUCKETS,
        )
        registry.register(self.relay_latency)

    def watch_rooms(self, room_count: Callable[[], int]) -> None:
        """Read ``conferences_count`` from the room registry at each scrape: exact by construction."""
        self.conferences_count.set_function(room_count)

    def watch_connections(self, count: Callable[[str], int]) -> None:
        """Read ``jsongle_connections{transport}`` at each scrape (connects, upgrades, disconnects)."""
        for transport in TRANSPORTS:
            self.connections.labels(transport).set_function(lambda transport=transport: count(transport))

    def watch_cluster(self, stats: Any) -> None:
        """Cluster-wide gauges, read from ``stats`` (nodes, users, conferences) at each scrape."""
        for name, attribute, text in (
            ("jsongle_cluster_nodes", "nodes", "Live nodes of the cluster (heartbeat not expired)"),
            ("jsongle_cluster_users", "users", "Connected clients, all nodes"),
            ("jsongle_cluster_conferences", "conferences", "Non-empty rooms, all nodes"),
        ):
            gauge = Gauge(name, text, registry=self.registry)
            gauge.set_function(lambda attribute=attribute: getattr(stats, attribute))

    def resume_outcome(self, outcome: str) -> None:
        """Count one connection state recovery outcome (``jsongle_resumes_total``)."""
        self.resumes(outcome).inc()

    def watch_away(self, count: Callable[[], int]) -> None:
        """Read ``jsongle_sessions_away`` at each scrape."""
        self.sessions_away.set_function(count)

    def watch_sessions(self, count: Callable[[], int]) -> None:
        """Read ``jsongle_engine_sessions`` at each scrape."""
        self.engine_sessions.set_function(count)

    def failed(self, what: str, error: str, warn: bool = True) -> None:
        """Count a background failure nobody waits for, and say it at warn:
        nothing fails silently. ``warn=False`` counts without a line (a failure
        that repeats, said once already)."""
        self.failures(what).inc()
        if warn:
            _log.warn("{what} failed: {error}", what=what, error=error)

    def connect_refused(self, reason: str, namespace: Optional[str] = None) -> None:
        """Count a refused connection (also usable as ``SocketIOServer.on_refused``)."""
        self.connect_errors(reason).inc()

    def stats(self) -> dict[str, float]:
        """The business metrics as a flat mapping of exposed names to values (``GET /stats``).

        Counts are integers, measures (minutes, MB, durations) floats; no
        ``technical_*`` series, as in the original.
        """
        flat: dict[str, float] = dict.fromkeys(BUSINESS, 0)
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name in flat and not sample.labels:
                    flat[sample.name] = int(sample.value) if sample.name in COUNTS else sample.value
        return flat

    def exposition(self) -> bytes:
        """The Prometheus text of the registry, without ``*_created`` samples."""
        return generate_latest(_WithoutCreated(self.registry))  # type: ignore[arg-type]
