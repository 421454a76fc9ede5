"""Business metrics on an injected Prometheus registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    """The JSONgle-Server metric set, under its original names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.users_count = Gauge("users_count", "Connected clients", registry=registry)
        self.users = Counter("users", "Clients connected since start", registry=registry)
        self.conferences_count = Gauge("conferences_count", "Non-empty rooms", registry=registry)
        self.conferences = Counter("conferences", "Rooms created since start", registry=registry)
        self.duration = Counter("duration", "Connected minutes, all users", registry=registry)
        self.recv = Counter("recv", "MB of JSONgle traffic received", registry=registry)
        self.sent = Counter("sent", "MB of JSONgle traffic sent", registry=registry)
        self.p2p = Counter("p2p", "P2P calls accepted", registry=registry)
        self.p2p_failed = Counter("p2p_failed", "P2P calls reported failed (ice-failed)", registry=registry)
        self.p2p_duration = Counter("p2p_duration", "Reported P2P call durations", registry=registry)
        self.messages = Counter("messages", "MUC text messages", registry=registry)
        self.reactions = Counter("reactions", "MUC reactions", registry=registry)

    def stats(self) -> dict[str, float]:
        """The metrics as a flat mapping of exposed names to values."""
        flat: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if not sample.labels and not sample.name.endswith("_created"):
                    flat[sample.name] = sample.value
        return flat
