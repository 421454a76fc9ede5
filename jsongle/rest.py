"""The REST API on ``restPort``: monitoring, metrics, log level, self-check.

State lives on :class:`RestApi`; every answer (errors included) is JSON,
except ``/metrics`` (Prometheus text) and ``/logs`` (the log file).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import platform
import shutil
from typing import Any, Callable, Optional
from urllib.parse import quote, unquote_to_bytes

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

import jsongle
from jsongle.config import Config
from jsongle.logs import ConsoleLevel, parse_level
from jsongle.metrics import Metrics
from jsongle.selfcheck import CheckResult
from jsongle.dates import iso_date

log = Logger()

JSON = "application/json"
CPU_SAMPLE_SECONDS = 0.1


CLOSED_ADMIN = (
    "this route answers loopback clients only while adminToken is empty: "
    "set adminToken and send it as 'Authorization: Bearer <adminToken>'"
)


def is_loopback(address: Any) -> bool:
    """127.0.0.0/8 and ::1 (IPv4-mapped too); anything else, or no IP, is not."""
    try:
        ip = ipaddress.ip_address(getattr(address, "host", ""))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class ApiError(Exception):
    """An error answered as ``{"errorCode", "errorMsg"}`` with its status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _cpu_times() -> Optional[tuple[int, int]]:
    """(idle, total) jiffies from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields[:8])


def _memory_free_percent() -> Optional[float]:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            info = {line.split(":")[0]: int(line.split()[1]) for line in handle if len(line.split()) >= 2}
        return round(100.0 * info["MemAvailable"] / info["MemTotal"], 2)
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        return None


def host_boot_time() -> Optional[float]:
    """When the host booted, in seconds since the epoch (``btime`` of /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


#: What the ``cors`` middleware of the original allows by default.
CORS_METHODS = b"GET,HEAD,PUT,PATCH,POST,DELETE"


def attachment(name: str) -> bytes:
    """``Content-Disposition`` of a download named ``name`` (RFC 6266):
    a quoted ASCII fallback, and ``filename*`` when the name is not ASCII."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "?" for c in name)
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += "; filename*=UTF-8''" + quote(name, safe="")
    return value.encode("ascii")


class _Front(Resource):
    """What happens around every route: CORS, the URL check, ``technical_*``.

    CORS is the original's ``cors()`` with its defaults: ``*`` on every
    answer, and any ``OPTIONS`` request is a preflight answered 204 with the
    allowed methods and the requested headers echoed.  Paths no route knows
    are counted under ``UNMATCHED``, methods HTTP does not define under
    ``OTHER``, so that a scan cannot grow the series without bound.
    """

    isLeaf = True
    UNMATCHED = "unmatched"
    OTHER = "OTHER"
    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})

    def __init__(self, inner: Resource, routes: frozenset[str], metrics: Metrics, clock: IReactorTime) -> None:
        super().__init__()
        self.inner = inner
        self.routes = routes
        self.traffic = metrics.rest
        self.clock = clock

    def render(self, request: Any) -> Any:
        request.setHeader(b"access-control-allow-origin", b"*")
        if request.method == b"OPTIONS":
            return self._preflight(request)
        try:
            path = unquote_to_bytes(request.path).decode("utf-8")
            unquote_to_bytes(request.uri).decode("utf-8")
        except UnicodeDecodeError:
            # Werkzeug would answer this one in plain text; every answer here is JSON.
            request.setResponseCode(400)
            request.setHeader(b"content-type", JSON.encode("ascii"))
            return json.dumps({"errorCode": 400001, "errorMsg": "the URL is not UTF-8"}).encode("utf-8")
        if path == "/metrics":
            return self.inner.render(request)
        method = request.method.decode("ascii", "replace")
        method = method if method in self.METHODS else self.OTHER
        label = path if path in self.routes else self.UNMATCHED
        self.traffic.requested(method, label)
        begin = self.clock.seconds()

        def answered(_: Any) -> None:
            elapsed = (self.clock.seconds() - begin) * 1000.0
            self.traffic.answered(method, label, request.code, elapsed)

        request.notifyFinish().addBoth(answered)
        return self.inner.render(request)

    @staticmethod
    def _preflight(request: Any) -> bytes:
        request.setHeader(b"access-control-allow-methods", CORS_METHODS)
        asked = request.getHeader(b"access-control-request-headers")
        if asked:
            request.setHeader(b"access-control-allow-headers", asked)
        request.setHeader(b"vary", b"Access-Control-Request-Headers")
        request.setResponseCode(204)
        return b""


class RestApi:
    """The REST routes, with their dependencies passed in.

    ``self_check`` is a callable returning ``Deferred[CheckResult]`` (see
    :class:`jsongle.selfcheck.SelfCheck`); ``started`` is the start time in
    seconds since the epoch.
    """

    app = Klein()

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        console: ConsoleLevel,
        clock: IReactorTime,
        started: float,
        self_check: Callable[[], "Deferred[CheckResult]"],
        boot_time: Callable[[], Optional[float]] = host_boot_time,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.console = console
        self.clock = clock
        self.started = started
        self.self_check = self_check
        self.boot_time = boot_time

    def resource(self) -> Resource:
        routes = frozenset(rule.rule for rule in self.app.url_map.iter_rules())
        return _Front(self.app.resource(), routes, self.metrics, self.clock)

    # ------------------------------------------------------------- helpers

    def _json(self, request: Any, body: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", JSON.encode())
        return json.dumps(body).encode("utf-8")

    def _admin(self, request: Any) -> None:
        """Let the admin routes answer: with no ``adminToken``, loopback
        clients only (403 for others); with one, its Bearer (401 without)."""
        token = self.config.admin_token
        if not token:
            if not is_loopback(request.getClientAddress()):
                raise ApiError(403, 403000, CLOSED_ADMIN)
            return
        header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            request.setHeader(b"www-authenticate", b"Bearer")
            raise ApiError(401, 401000, "missing or wrong admin token (Authorization: Bearer ...)")

    def _elapsed_ms(self, since: float) -> float:
        return round((self.clock.seconds() - since) * 1000.0, 3)

    # ---------------------------------------------------------------- errors

    @app.handle_errors(ApiError)
    def api_error(self, request: Any, failure: Any) -> bytes:
        error = failure.value
        return self._json(request, {"errorCode": error.code, "errorMsg": error.message}, error.status)

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        path = request.path.decode("utf-8", "replace")
        return self._json(request, {"errorCode": 404000, "errorMsg": f"no route {path}"}, 404)

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Any) -> bytes:
        allowed = sorted(set(failure.value.valid_methods or ()) | {"OPTIONS"})
        request.setHeader(b"allow", ", ".join(allowed).encode())
        method = request.method.decode("ascii", "replace")
        return self._json(request, {"errorCode": 405000, "errorMsg": f"method {method} not allowed"}, 405)

    # ---------------------------------------------------------------- routes

    @app.route("/about", methods=["GET"])
    def about(self, request: Any) -> bytes:
        return self._json(request, {
            "name": "jsongle",
            "version": jsongle.__version__,
            "description": jsongle.DESCRIPTION,
            "started": iso_date(self.started),
            "configuration": {
                "restPort": self.config.rest_port,
                "wsPort": self.config.ws_port,
                "useSSL": self.config.use_https,
            },
        })

    @app.route("/ping", methods=["GET"])
    @app.route("/health", methods=["GET"])
    def health(self, request: Any) -> bytes:
        return self._json(request, {"status": "OK"})

    @app.route("/stats", methods=["GET"])
    def stats(self, request: Any) -> bytes:
        return self._json(request, self.metrics.stats())

    @app.route("/metrics", methods=["GET"])
    def prometheus(self, request: Any) -> bytes:
        """Rendered here, not by prometheus_client's MetricsResource: that
        one is a WSGI resource run in the reactor's thread pool."""
        self.metrics.rest.metrics_requests.inc()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return self.metrics.exposition()

    @app.route("/telemetry", methods=["GET"])
    @inlineCallbacks
    def telemetry(self, request: Any) -> Any:
        """Host figures, all free ones in percent.

        ``cpuFree`` is the idle share of ``/proc/stat`` CPU time over a
        short sample (0.1 s on the injected clock); without ``/proc`` it is
        an estimate from the 1-minute load average per CPU.  ``uptime`` is
        the date the host booted (the original's meaning), ``null`` where it
        cannot be known; ``diskFree`` is for the file system holding the log
        file.
        """
        begin = self.clock.seconds()
        before = _cpu_times()
        if before is not None:
            yield deferLater(self.clock, CPU_SAMPLE_SECONDS, lambda: None)
            after = _cpu_times()
            idle, total = after[0] - before[0], after[1] - before[1]  # type: ignore[index]
            cpu_free = round(100.0 * idle / total, 2) if total > 0 else 100.0
        else:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
            cpu_free = round(max(0.0, 100.0 * (1.0 - load)), 2)
        try:
            disk = shutil.disk_usage(os.path.dirname(os.path.abspath(self.config.log_path)) or "/")
            disk_free = round(100.0 * disk.free / disk.total, 2)
        except OSError:
            disk_free = None
        booted = self.boot_time()
        return self._json(request, {
            "memoryFree": _memory_free_percent(),
            "diskFree": disk_free,
            "cpuFree": cpu_free,
            "uptime": None if booted is None else iso_date(booted),
            "executionTime": self._elapsed_ms(begin),
            "system": platform.platform(),
        })

    @app.route("/tests", methods=["GET"])
    @inlineCallbacks
    def tests(self, request: Any) -> Any:
        begin = self.clock.seconds()
        try:
            result: CheckResult = yield self.self_check()
        except Exception as error:  # a broken check is a failed check, still JSON
            log.failure("the self-check failed")
            result = CheckResult(0, f"the self-check failed: {error}")
        body: dict[str, Any] = {"score": result.score, "executionTime": self._elapsed_ms(begin)}
        if result.reason is None:
            return self._json(request, body)
        body["reason"] = result.reason
        return self._json(request, body, 503)

    @app.route("/logs/levels", methods=["PUT"])
    def set_level(self, request: Any) -> bytes:
        self._admin(request)
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, 400001, "the body is not JSON") from None
        level = body.get("level") if isinstance(body, dict) else None
        if not isinstance(level, str):
            raise ApiError(400, 400001, "missing 'level' (a string) in the body")
        try:
            parse_level(level)
        except KeyError:
            raise ApiError(400, 400001, f"unknown level {level!r}") from None
        was = self.console.set(level)
        return self._json(request, {"level": level.lower(), "was": was})

    @app.route("/logs", methods=["GET"])
    def logs(self, request: Any) -> bytes:
        self._admin(request)
        try:
            with open(self.config.log_path, "rb") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ApiError(404, 404001, "no log file yet") from None
        except OSError as error:
            raise ApiError(500, 500001, f"cannot read the log file: {error.strerror}") from None
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-disposition", attachment(os.path.basename(self.config.log_path)))
        return text
