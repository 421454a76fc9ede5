"""etc/grafana-dashboard.json asks only for series the daemon exports.

A single daemon and a clustered one (redisUrl) get a little traffic (a hello,
joins, a relayed chat message, an iq-error, a refused CONNECT, messages over
the rate limit), then their /metrics are parsed with prometheus_client's parser
and every metric name in every panel query must be among the samples.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[1] / "etc" / "grafana-dashboard.json"
TOKEN = "test-token"

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "by", "without",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool", "topk", "bottomk",
    "label_values", "le", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a label_values() query) selects."""
    expr = re.sub(r"label_values\(\s*([^,)]+),[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end():].lstrip()
        if rest.startswith("(") or match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            queries.append((f"${variable['name']}", variable["definition"]))
    return queries


def test_metric_names_parser():
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}[5m])))') == {"a_bucket"}
    assert metric_names("sum(rate(b_sum[5m])) / sum(rate(b_count[5m]))") == {"b_sum", "b_count"}
    assert metric_names('label_values(users_count{job="x"}, job)') == {"users_count"}


class Member:
    """A python-socketio client that said hello and joined room r1."""

    def __init__(self, url: str) -> None:
        self.messages: list[dict] = []
        self.arrived = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("jsongle", self._received)
        self.sio.connect(url, auth={"appToken": TOKEN}, transports=["websocket"], wait_timeout=10)
        hello = self.wait(lambda j: j.get("query") == "session-hello")
        self.server, self.uid = hello["from"], uuid.uuid4().hex
        transaction = hello["jsongle"]["transaction"]
        self.send(self.server, {"action": "iq-result", "query": "session-hello", "transaction": transaction, "description": {"uid": self.uid}})
        self.wait(lambda j: j.get("action") == "ack")
        self.send(self.server, {"action": "iq-set", "query": "session-join", "transaction": "join", "description": {"rid": "r1"}})
        self.wait(lambda j: j.get("action") == "iq-result" and j.get("query") == "session-join")

    def _received(self, message: dict) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait(self, check) -> dict:
        def found():
            return next((m for m in self.messages if check(m.get("jsongle") or {})), None)

        with self.arrived:
            assert self.arrived.wait_for(found, timeout=10), self.messages
            return found()

    def send(self, to: str, jsongle: dict) -> None:
        self.sio.emit("jsongle", {"id": uuid.uuid4().hex, "from": self.uid, "to": to, "jsongle": jsongle})


def traffic(url: str) -> None:
    """Enough traffic that every labelled series has a sample."""
    alice = Member(url)
    bob = Member(url)
    try:
        alice.send("r1", {"action": "session-text", "namespace": "room", "description": {"content": "hi"}})
        bob.wait(lambda j: j.get("action") == "session-text")
        alice.send(alice.server, {"action": "iq-set", "query": "no-such-query", "transaction": "t", "description": {}})
        alice.wait(lambda j: j.get("action") == "iq-error")
        for _ in range(30):  # over rateLimitBurst: warned and dropped
            alice.send("r1", {"action": "session-custom", "namespace": "room", "description": {}})
        alice.wait(lambda j: (j.get("description") or {}).get("errorCode") == 429001)
    finally:
        alice.sio.disconnect()
        bob.sio.disconnect()
    refused = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(url, auth={"appToken": "wrong"}, transports=["websocket"], wait_timeout=10)


def scrape(rest_url: str) -> set[str]:
    with urllib.request.urlopen(f"{rest_url}/metrics", timeout=10) as answer:
        text = answer.read().decode("utf-8")
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_panel_names_only_exported_series(daemon_factory, redis_server):
    config = {"appToken": TOKEN, "rateLimitPerSecond": 5, "rateLimitBurst": 20, "rateLimitDisconnect": 0}
    single = daemon_factory(config)
    clustered = daemon_factory({**config, "redisUrl": redis_server.url, "nodeId": "node1"})
    names: set[str] = set()
    for daemon in (single, clustered):
        traffic(daemon.ws_url)
        names |= scrape(daemon.rest_url)
    queries = dashboard_queries()
    assert len(queries) >= 10
    for title, expr in queries:
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr}"
        assert used <= names, f"{title}: {sorted(used - names)} not exported (query {expr})"
    # The dashboard covers what the operators asked for.
    everything = set().union(*(metric_names(e) for _, e in queries))
    for wanted in (
        "users_count", "conferences_count", "p2p_total", "jsongle_relayed_messages_total",
        "jsongle_relay_latency_seconds_bucket", "jsongle_iq_errors_total", "jsongle_connect_errors_total",
        "jsongle_cluster_nodes",
    ):
        assert wanted in everything, wanted
