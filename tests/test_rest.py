"""The REST API: every route through StubTreq (no sockets), then the daemon."""

from __future__ import annotations

import json
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
from twisted.python.failure import Failure

from jsongle.config import Config
from jsongle.logs import ConsoleLevel
from jsongle.metrics import Metrics
from jsongle.rest import RestApi, iso_date
from jsongle.selfcheck import CheckResult, SelfCheck

BASE = "http://rest.example"
ADMIN = "adm1n-token"


class Harness:
    def __init__(self, config: Config | None = None, check: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.metrics = Metrics(CollectorRegistry())
        self.console = ConsoleLevel("warn", publisher=LogPublisher())
        self.config = config or Config(rest_port=8081, ws_port=8080)
        self.check = check or (lambda: succeed(CheckResult(100, None)))
        self.api = RestApi(self.config, self.metrics, self.console, self.clock, 1_700_000_000.5, self.check)
        self.stub = StubTreq(self.api.resource())

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
    code, body = harness.json("GET", "/stats")
    assert code == 200
    assert body["users_count"] == 3 and body["messages_total"] == 2


def test_metrics() -> None:
    harness = Harness()
    harness.metrics.users.inc()
    response, body = harness.request("GET", "/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["users"].samples[0].value == 1


def test_telemetry() -> None:
    code, body = Harness().json("GET", "/telemetry")
    assert code == 200
    assert set(body) == {"memoryFree", "diskFree", "cpuFree", "uptime", "executionTime", "system"}
    assert 0 <= body["cpuFree"] <= 100
    assert body["executionTime"] >= 0 and body["system"]


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


def test_cors() -> None:
    harness = Harness(Config(cors_policy_origin="https://ok.example"))
    response, _ = harness.request("GET", "/health", headers={"Origin": "https://ok.example"})
    assert response.headers.getRawHeaders("access-control-allow-origin") == ["https://ok.example"]
    response, _ = harness.request("GET", "/health", headers={"Origin": "https://evil.example"})
    assert response.headers.getRawHeaders("access-control-allow-origin") is None
    response, _ = harness.request("OPTIONS", "/logs/levels", headers={"Origin": "https://ok.example"})
    assert response.code == 204
    assert "PUT" in response.headers.getRawHeaders("access-control-allow-methods")[0]
    assert "Authorization" in response.headers.getRawHeaders("access-control-allow-headers")[0]


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
    status, ctype, _ = http("GET", url + "/logs")
    assert status == 200 and ctype.startswith("text/plain")


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
