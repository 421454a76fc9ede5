"""The REST API: every route through StubTreq (no sockets), then the daemon."""

from __future__ import annotations

from http.client import HTTPConnection
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogPublisher
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from jsongle.config import Config
from jsongle.logs import ConsoleLevel
from jsongle.metrics import Metrics
from jsongle.rest import RestApi, host_boot_time, iso_date
from jsongle.selfcheck import CheckResult, SelfCheck

BASE = "http://rest.example"
ADMIN = "adm1n-token"


BOOTED = 1_699_990_000.0


class _FromAddress(Resource):
    """Serves ``inner`` as if every request came from ``address``."""

    isLeaf = True

    def __init__(self, inner: Resource, address: Any) -> None:
        super().__init__()
        self.inner = inner
        self.address = address

    def render(self, request: Any) -> Any:
        request.getClientAddress = lambda: self.address
        return self.inner.render(request)


class Harness:
    def __init__(self, config: Config | None = None, check: Any = None, client: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.metrics = Metrics(CollectorRegistry())
        self.console = ConsoleLevel("warn", publisher=LogPublisher())
        self.config = config or Config(rest_port=8081, ws_port=8080)
        self.check = check or (lambda: succeed(CheckResult(100, None)))
        self.api = RestApi(
            self.config, self.metrics, self.console, self.clock, 1_700_000_000.5, self.check, lambda: BOOTED
        )
        resource = self.api.resource()
        self.stub = StubTreq(resource if client is None else _FromAddress(resource, client))

    def _settle(self, d: Any) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        for _ in range(5):
            self.stub.flush()
            self.clock.advance(1)
        self.stub.flush()
        assert results, "no answer"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[Any, bytes]:
        response = self._settle(self.stub.request(method, BASE + path, **kwargs))
        return response, self._settle(response.content())

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response, body = self.request(method, path, **kwargs)
        assert response.headers.getRawHeaders("content-type") == ["application/json"]
        return response.code, json.loads(body)


def test_about() -> None:
    code, body = Harness().json("GET", "/about")
    assert code == 200
    assert body["name"] == "jsongle"
    assert set(body) == {"name", "version", "description", "started", "configuration"}
    assert body["started"] == iso_date(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert body["configuration"] == {"restPort": 8081, "wsPort": 8080, "useSSL": False}


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_ping_health(path: str) -> None:
    assert Harness().json("GET", path) == (200, {"status": "OK"})


def test_stats() -> None:
    harness = Harness()
    harness.metrics.users_count.set(3)
    harness.metrics.messages.inc(2)
    harness.metrics.p2p_count.inc()
    harness.metrics.duration.inc(1.5)
    response, raw = harness.request("GET", "/stats")
    assert response.code == 200
    body = json.loads(raw)
    assert body["users_count"] == 3 and body["messages_total"] == 2 and body["p2p_count"] == 1
    assert b'"users_count": 3,' in raw and b'"p2p_count": 1' in raw  # integers, not 3.0
    assert body["duration_total"] == 1.5
    assert not [name for name in body if name.startswith("technical_") or name.endswith("_created")]


def test_technical_metrics_count_the_rest_traffic() -> None:
    harness = Harness()
    harness.json("GET", "/stats")
    harness.json("GET", "/stats")
    harness.json("GET", "/nope/1")
    harness.json("GET", "/nope/2")
    harness.json("PUT", "/logs/levels", data=b'{"level": "info"}')
    harness.request("OPTIONS", "/stats")  # a preflight: answered before counting, as cors() does
    harness.request("BREW", "/stats")
    harness.request("GET", "/metrics")
    _, text = harness.request("GET", "/metrics")
    registry = harness.metrics.registry
    sample = registry.get_sample_value
    assert sample("technical_all_requests_total", {"method": "GET"}) == 4
    assert sample("technical_all_requests_total", {"method": "PUT"}) == 1
    assert sample("technical_all_requests_total", {"method": "OPTIONS"}) is None
    assert sample("technical_all_requests_total", {"method": "OTHER"}) == 1
    assert sample("technical_all_paths_requests", {"path": "/stats"}) == 3
    assert sample("technical_all_paths_requests", {"path": "unmatched"}) == 2
    assert sample("technical_all_paths_requests", {"path": "/metrics"}) is None
    assert sample("technical_metrics_requests_total") == 2
    labels = {"method": "GET", "path": "/stats", "status": "200"}
    assert sample("technical_response_time_ms_count", labels) == 2
    assert sample("technical_response_time_ms_count", {"method": "GET", "path": "unmatched", "status": "404"}) == 2
    assert sample("technical_response_time_ms_sum", labels) == 0.0  # the clock did not move
    exposed = text.decode()
    assert "# TYPE technical_response_time_ms summary" in exposed
    assert 'technical_all_paths_requests{path="/stats"} 3.0' in exposed
    assert 'technical_all_requests_total{method="GET"} ' in exposed
    assert "technical_metrics_requests_total 2.0" in exposed  # this one counted before the rendering
    assert "_created" not in exposed


def test_metrics() -> None:
    harness = Harness()
    harness.metrics.users.inc()
    response, body = harness.request("GET", "/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["users"].samples[0].value == 1
    assert families["p2p_count"].type == "gauge"
    assert not [s for f in families.values() for s in f.samples if s.name.endswith("_created")]


def test_telemetry() -> None:
    code, body = Harness().json("GET", "/telemetry")
    assert code == 200
    assert set(body) == {"memoryFree", "diskFree", "cpuFree", "uptime", "executionTime", "system"}
    assert 0 <= body["cpuFree"] <= 100
    assert body["executionTime"] >= 0 and body["system"]
    assert body["uptime"] == iso_date(BOOTED) == "2023-11-14T19:26:40.000Z"


def test_host_boot_time_is_from_proc_stat() -> None:
    booted = host_boot_time()
    assert booted is not None and 0 < booted <= time.time()


def test_tests_success_and_failure() -> None:
    assert Harness().json("GET", "/tests") == (200, {"score": 100, "executionTime": 0.0})
    failing = Harness(check=lambda: succeed(CheckResult(40, "timed out")))
    code, body = failing.json("GET", "/tests")
    assert code == 503
    assert body["score"] == 40 and body["reason"] == "timed out" and "executionTime" in body


def test_tests_when_the_check_itself_breaks() -> None:
    def broken() -> Any:
        raise AttributeError("no socket")

    code, body = Harness(check=broken).json("GET", "/tests")
    assert code == 503 and body["score"] == 0 and "no socket" in body["reason"]


def test_set_level() -> None:
    harness = Harness()
    code, body = harness.json("PUT", "/logs/levels", data=b'{"level": "DEBUG"}')
    assert (code, body) == (200, {"level": "debug", "was": "warn"})
    assert harness.console.name == "debug"
    for alias in ("trace", "fatal"):
        assert harness.json("PUT", "/logs/levels", data=json.dumps({"level": alias}).encode())[0] == 200


@pytest.mark.parametrize(
    "data", [b'{"level": "loud"}', b"not json", b"{}", b'{"level": 3}', b"[1]", b"[" * 100_000, b'{"level": "\xff"}']
)
def test_set_level_bad(data: bytes) -> None:
    harness = Harness()
    code, body = harness.json("PUT", "/logs/levels", data=data)
    assert code == 400 and body["errorCode"] == 400001 and body["errorMsg"]
    assert harness.console.name == "warn"


@pytest.mark.parametrize("path", ["/%ff", "/about%c3", "/logs/%80levels"])
def test_path_that_is_not_utf8_is_a_json_400(path: str) -> None:
    code, body = Harness().json("GET", path)
    assert code == 400 and body == {"errorCode": 400001, "errorMsg": "the URL is not UTF-8"}


def test_logs(tmp_path: Any) -> None:
    log_path = tmp_path / "jsongle.log"
    harness = Harness(Config(log_path=str(log_path)))
    code, body = harness.json("GET", "/logs")
    assert code == 404 and body["errorCode"] == 404001
    log_path.write_text("line one\n", encoding="utf-8")
    response, text = harness.request("GET", "/logs")
    assert response.code == 200 and text == b"line one\n"
    assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert response.headers.getRawHeaders("content-disposition") == ['attachment; filename="jsongle.log"']


def test_logs_download_name_that_is_not_ascii(tmp_path: Any) -> None:
    log_path = tmp_path / 'jé "s".log'
    log_path.write_text("x\n", encoding="utf-8")
    response, _ = Harness(Config(log_path=str(log_path))).request("GET", "/logs")
    assert response.headers.getRawHeaders("content-disposition") == [
        "attachment; filename=\"j? ?s?.log\"; filename*=UTF-8''j%C3%A9%20%22s%22.log"
    ]


@pytest.mark.parametrize(
    "address", [IPv4Address("TCP", "10.1.2.3", 5000), IPv4Address("TCP", "192.0.2.7", 5000), IPv6Address("TCP", "2001:db8::1", 5000), IPv6Address("TCP", "::ffff:10.0.0.1", 5000)]
)
def test_admin_routes_closed_to_others_without_admin_token(tmp_path: Any, address: Any) -> None:
    (tmp_path / "x.log").write_text("x", encoding="utf-8")
    harness = Harness(Config(log_path=str(tmp_path / "x.log")), client=address)
    for method, path, data in (("GET", "/logs", None), ("PUT", "/logs/levels", b'{"level": "debug"}')):
        code, body = harness.json(method, path, data=data)
        assert code == 403 and body["errorCode"] == 403000
        assert "adminToken" in body["errorMsg"] and "Bearer" in body["errorMsg"]
    assert harness.console.name == "warn"
    assert harness.json("GET", "/health")[0] == 200  # monitoring stays open
    # with adminToken set, the token opens them from anywhere
    opened = Harness(Config(log_path=str(tmp_path / "x.log"), admin_token=ADMIN), client=address)
    good = {"Authorization": f"Bearer {ADMIN}"}
    assert opened.request("GET", "/logs", headers=good)[0].code == 200
    assert opened.json("PUT", "/logs/levels", data=b'{"level": "debug"}', headers=good)[0] == 200


@pytest.mark.parametrize(
    "address", [IPv4Address("TCP", "127.0.0.1", 5000), IPv4Address("TCP", "127.0.0.2", 5000), IPv6Address("TCP", "::1", 5000), IPv6Address("TCP", "::ffff:127.0.0.1", 5000)]
)
def test_admin_routes_open_to_loopback_without_admin_token(tmp_path: Any, address: Any) -> None:
    (tmp_path / "x.log").write_text("x", encoding="utf-8")
    harness = Harness(Config(log_path=str(tmp_path / "x.log")), client=address)
    assert harness.request("GET", "/logs")[0].code == 200
    assert harness.json("PUT", "/logs/levels", data=b'{"level": "debug"}') == (200, {"level": "debug", "was": "warn"})


def test_admin_token(tmp_path: Any) -> None:
    (tmp_path / "x.log").write_text("x", encoding="utf-8")
    harness = Harness(Config(admin_token=ADMIN, log_path=str(tmp_path / "x.log")))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN}):
        code, body = harness.json("PUT", "/logs/levels", data=b'{"level": "info"}', headers=headers)
        assert code == 401 and body["errorCode"] == 401000
        assert harness.json("GET", "/logs", headers=headers)[0] == 401
    good = {"Authorization": f"Bearer {ADMIN}"}
    assert harness.json("PUT", "/logs/levels", data=b'{"level": "info"}', headers=good)[0] == 200
    assert harness.request("GET", "/logs", headers=good)[0].code == 200
    assert harness.json("GET", "/health")[0] == 200  # monitoring stays open


def test_unknown_route_and_method() -> None:
    harness = Harness()
    code, body = harness.json("GET", "/nope")
    assert code == 404 and body["errorCode"] == 404000
    code, body = harness.json("POST", "/ping")
    assert code == 405 and body["errorCode"] == 405000
    assert harness.json("GET", "/logs/levels")[0] == 405


@pytest.mark.parametrize("cors_policy_origin", ["", "https://ok.example"])
def test_cors_on_every_answer(cors_policy_origin: str) -> None:
    """As the original's ``cors()``: corsPolicyOrigin is the WebSocket port's, not the REST API's."""
    harness = Harness(Config(cors_policy_origin=cors_policy_origin))
    for method, path, headers in (
        ("GET", "/health", {"Origin": "https://evil.example"}),
        ("GET", "/stats", {}),
        ("GET", "/metrics", {"Origin": "https://dash.example"}),
        ("GET", "/nope", {}),
        ("POST", "/ping", {}),
        ("GET", "/%ff", {}),
    ):
        response, _ = harness.request(method, path, headers=headers)
        assert response.headers.getRawHeaders("access-control-allow-origin") == ["*"], path
        assert response.headers.getRawHeaders("access-control-allow-credentials") is None


@pytest.mark.parametrize("path", ["/logs/levels", "/stats", "/nope"])
def test_cors_preflight(path: str) -> None:
    harness = Harness()
    response, body = harness.request("OPTIONS", path, headers={
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type,x-custom",
    })
    assert (response.code, body) == (204, b"")
    headers = response.headers
    assert headers.getRawHeaders("access-control-allow-origin") == ["*"]
    assert headers.getRawHeaders("access-control-allow-methods") == ["GET,HEAD,PUT,PATCH,POST,DELETE"]
    assert headers.getRawHeaders("access-control-allow-headers") == ["authorization,content-type,x-custom"]
    assert headers.getRawHeaders("vary") == ["Access-Control-Request-Headers"]
    response, _ = harness.request("OPTIONS", path)  # no header asked: none allowed
    assert response.code == 204 and response.headers.getRawHeaders("access-control-allow-headers") is None


# ------------------------------------------------------------ SelfCheck unit


def _result(d: Any) -> CheckResult:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results and isinstance(results[0], CheckResult)
    return results[0]


def test_selfcheck_not_listening() -> None:
    result = _result(SelfCheck(MemoryReactorClock(), lambda: None, "", "t", False)())
    assert result.score == 0 and "not listening" in result.reason


def test_selfcheck_refused_and_timeout() -> None:
    reactor = MemoryReactorClock()
    d = SelfCheck(reactor, lambda: 4242, "", "t", False, timeout=3)()
    host, port, factory, _, _ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 4242)
    factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
    result = _result(d)
    assert result.score == 0 and "cannot connect" in result.reason
    assert not reactor.getDelayedCalls()  # the timer is cancelled

    d = SelfCheck(reactor, lambda: 4242, "10.0.0.1", "t", False, timeout=3)()
    assert reactor.tcpClients[-1][0] == "10.0.0.1"
    reactor.advance(3)
    result = _result(d)
    assert result.score == 0 and "timed out" in result.reason


def test_rest_api_with_failing_selfcheck() -> None:
    check = SelfCheck(MemoryReactorClock(), lambda: None, "", "t", False)
    code, body = Harness(check=check).json("GET", "/tests")
    assert code == 503 and body["score"] == 0 and "not listening" in body["reason"]


# ------------------------------------------------------------ the daemon


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("content-type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type"), error.read()


def test_daemon_routes(daemon_factory) -> None:
    daemon = daemon_factory()
    daemon.wait_for_port("rest")
    url = daemon.rest_url
    keys = {
        "/about": {"name", "version", "description", "started", "configuration"},
        "/ping": {"status"},
        "/health": {"status"},
        "/stats": {"users_count", "users_total", "conferences_count", "messages_total"},
        "/telemetry": {"memoryFree", "diskFree", "cpuFree", "uptime", "executionTime", "system"},
        "/tests": {"score", "executionTime"},
    }
    for path, expected in keys.items():
        status, ctype, body = http("GET", url + path)
        assert (path, status, ctype) == (path, 200, "application/json")
        assert expected <= set(json.loads(body)), path
    status, _, body = http("GET", url + "/tests")
    assert json.loads(body)["score"] == 100
    status, ctype, body = http("GET", url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"users_count", "users", "conferences_count", "messages"} <= names
    status, ctype, body = http("GET", url + "/nope")
    assert status == 404 and ctype == "application/json" and json.loads(body)["errorCode"] == 404000
    status, ctype, _ = http("DELETE", url + "/ping")
    assert status == 405 and ctype == "application/json"
    status, ctype, body = http("PUT", url + "/logs/levels", b'{"level": "debug"}')
    assert status == 200 and json.loads(body) == {"level": "debug", "was": "info"}
    status, _, body = http("PUT", url + "/logs/levels", b'{"level": "nope"}')
    assert status == 400 and json.loads(body)["errorCode"] == 400001
    status, ctype, _ = http("GET", url + "/logs")  # adminToken empty, and the client is 127.0.0.1
    assert status == 200 and ctype.startswith("text/plain")
    daemon.wait_for_line(r"adminToken is empty: GET /logs and PUT /logs/levels answer loopback clients only")
    # another loopback address is loopback too
    connection = HTTPConnection("127.0.0.1", daemon.rest_port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        connection.request("GET", "/logs")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("content-disposition") == 'attachment; filename="jsongle.log"'
        response.read()
    finally:
        connection.close()


def test_daemon_admin_token(daemon_factory) -> None:
    daemon = daemon_factory({"adminToken": ADMIN})
    daemon.wait_for_port("rest")
    url = daemon.rest_url + "/logs/levels"
    status, ctype, body = http("PUT", url, b'{"level": "debug"}')
    assert status == 401 and ctype == "application/json" and json.loads(body)["errorCode"] == 401000
    status, _, body = http("PUT", url, b'{"level": "debug"}', {"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and json.loads(body)["level"] == "debug"
    assert http("GET", daemon.rest_url + "/logs")[0] == 401
    assert http("GET", daemon.rest_url + "/health")[0] == 200


# ------------------------------------------------ the self-check for real


@pytest_twisted.inlineCallbacks
def test_tests_route_fails_once_the_websocket_port_is_unreachable(tmp_path) -> None:
    """The real service tree on the real reactor: ``/tests`` scores 100, then
    503 once the WebSocket listener is closed under it."""
    import treq
    from twisted.application.service import MultiService
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from jsongle.config import load_config
    from jsongle.signaling.builtin import builtin_actions, builtin_queries
    from jsongle.signaling.handlers import HandlerSet
    from jsongle.tap import ListeningService, Signaling, add_rest_service

    env = tmp_path / "jsongle.env"
    env.write_text("wsPort=0\nrestPort=0\nlistenAddress=127.0.0.1\nappToken=t\n", encoding="utf-8")
    config, _ = load_config(str(env), {})
    signaling = Signaling(config, reactor, HandlerSet(builtin_queries(), builtin_actions()))
    root = MultiService()
    websocket = ListeningService("websocket", TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), signaling.site())
    websocket.setServiceParent(root)
    add_rest_service(root, reactor, config, None, signaling, ConsoleLevel("warn", LogPublisher()), websocket)
    rest = root.services[-1]
    root.privilegedStartService()
    root.startService()
    try:
        yield websocket._waitingForPort
        yield rest._waitingForPort
        url = f"http://127.0.0.1:{rest.port.getHost().port}/tests"
        response = yield treq.get(url)
        body = yield response.json()
        assert response.code == 200 and body["score"] == 100
        yield websocket.port.stopListening()  # the port number stays known, nothing answers on it
        response = yield treq.get(url)
        body = yield response.json()
        assert response.code == 503
        assert body["score"] < 100 and "cannot connect" in body["reason"]
    finally:
        yield root.stopService()
        signaling.engine.close_all()


def test_daemon_as_a_dashboard_sees_it(daemon_factory) -> None:
    """CORS, the technical_* series, no _created, /telemetry's boot date: on the running daemon."""
    daemon = daemon_factory()
    daemon.wait_for_port("rest")
    url = daemon.rest_url
    request = urllib.request.Request(url + "/stats", headers={"Origin": "https://dashboard.example"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        stats = json.loads(response.read())
    assert stats["users_count"] == 0 and isinstance(stats["users_count"], int) and "p2p_count" in stats
    assert not [name for name in stats if name.startswith("technical_")]
    preflight = urllib.request.Request(url + "/logs/levels", method="OPTIONS", headers={
        "Origin": "https://dashboard.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type"})
    with urllib.request.urlopen(preflight, timeout=10) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
        assert response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    status, _, body = http("GET", url + "/telemetry")
    booted = host_boot_time()
    assert status == 200 and booted is not None and json.loads(body)["uptime"] == iso_date(booted)
    http("GET", url + "/nope")
    http("GET", url + "/metrics")
    status, _, body = http("GET", url + "/metrics")
    text = body.decode()
    assert "_created" not in text
    assert "# TYPE p2p_count gauge" in text and "\np2p_count 0.0\n" in text
    assert 'technical_all_requests_total{method="GET"} 3.0' in text  # /stats, /telemetry, /nope
    assert 'technical_all_requests_total{method="OPTIONS"}' not in text
    assert 'technical_all_paths_requests{path="/stats"} 1.0' in text
    assert 'technical_all_paths_requests{path="unmatched"} 1.0' in text
    assert "technical_metrics_requests_total 2.0" in text
    assert 'technical_response_time_ms_count{method="GET",path="/telemetry",status="200"} 1.0' in text
