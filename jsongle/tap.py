"""The twistd entry point: options and the service tree.

Only this module touches the real reactor and ``getPlugins``; everything it
builds takes its dependencies as arguments (see :func:`build_site`).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from prometheus_client import CollectorRegistry
from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from jsongle.config import Config, ConfigError, load_config
from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.logs import ConsoleLevel
from jsongle.metrics import Metrics
from jsongle.signaling.application import SignalingApplication
from jsongle.signaling.handlers import HandlerConflict, HandlerSet, discover
from jsongle.signaling.rooms import InMemoryRoomRegistry, RoomCaps
from jsongle.socketio.server import SocketIOServer

log = Logger()


class Options(usage.Options):
    """``twistd jsongle --config FILE``: a dotenv file; the environment wins."""

    optParameters = [
        ["config", "c", None, "dotenv configuration file (keys as in etc/jsongle.env)"],
    ]

    def postOptions(self) -> None:
        try:
            self.config, self.warnings = load_config(self["config"], os.environ)
        except ConfigError as error:
            raise usage.UsageError(f"bad configuration: {error}")
        if self.config.use_https:
            self.tls = tls_options(self.config)
        try:
            self.handlers = discover()
        except HandlerConflict as error:
            raise usage.UsageError(f"handler plugins conflict: {error}")


def tls_options(config: Config) -> ssl.CertificateOptions:
    """Load key and cert now, so a missing file stops the start by name."""
    for key, path in (("key", config.key), ("cert", config.cert)):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise usage.UsageError(f"bad configuration: {key}: {path!r} is missing or unreadable (useHTTPS=true)")
    try:
        with open(config.key, "rb") as key_file, open(config.cert, "rb") as cert_file:
            pem = key_file.read() + b"\n" + cert_file.read()
        return ssl.PrivateCertificate.loadPEM(pem).options()
    except Exception as error:  # pyOpenSSL raises several kinds
        raise usage.UsageError(f"bad configuration: key/cert {config.key!r}, {config.cert!r}: {error}")


class Signaling:
    """Everything one server process runs, built from explicit parts."""

    def __init__(self, config: Config, clock: IReactorTime, handlers: HandlerSet, registry: Optional[CollectorRegistry] = None) -> None:
        self.config = config
        self.metrics = Metrics(registry or CollectorRegistry())
        self.rooms = InMemoryRoomRegistry(
            RoomCaps(config.max_members_per_room, config.max_members_per_multi_room, config.max_multi_room_per_user)
        )
        self.application = SignalingApplication(config, self.rooms, handlers, self.metrics, clock)
        self.socketio = SocketIOServer({"/": self.application}, clock, config.connect_timeout / 1000.0)
        origins = tuple(o.strip() for o in config.cors_policy_origin.split(",") if o.strip())
        self.engine = EngineServer(
            EngineOptions(config.ping_interval, config.ping_timeout, config.max_payload, cors_origins=origins),
            clock,
            self.socketio.on_engine_open,
        )

    def site(self) -> Site:
        return engineio_site(self.engine)


class ListeningService(StreamServerEndpointService):
    """Listens and logs the bound address (port 0 picks a free one)."""

    def __init__(self, label: str, endpoint: Any, factory: Any) -> None:
        super().__init__(endpoint, factory)
        self._raiseSynchronously = True
        self.label = label

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._announce)

    def _announce(self, port: Any) -> Any:
        host = port.getHost()
        log.info("{label} listening on {host}:{port}", label=self.label, host=host.host, port=host.port)
        return port


class JsongleService(service.MultiService):
    """The root service: console log level, listeners, orderly shutdown."""

    def __init__(self, signaling: Signaling, console: ConsoleLevel, warnings: list[str]) -> None:
        super().__init__()
        self.signaling = signaling
        self.console = console
        self.warnings = warnings

    def startService(self) -> None:
        self.console.install()
        for warning in self.warnings:
            log.warn("{warning}", warning=warning)
        config = self.signaling.config
        if not config.app_token:
            log.warn("appToken is empty: anyone can connect")
        if not config.use_https:
            log.info("useHTTPS=false: serving plain HTTP/WebSocket (put TLS in front, e.g. a reverse proxy)")
        super().startService()

    def stopService(self) -> Any:
        self.signaling.engine.close_all()
        result = super().stopService()
        self.console.uninstall()
        return result


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    config: Config = options.config
    signaling = Signaling(config, reactor, options.handlers)
    root = JsongleService(signaling, ConsoleLevel(config.log_default_level), options.warnings)
    interface = config.listen_address or ""
    if config.use_https:
        endpoint = SSL4ServerEndpoint(reactor, config.ws_port, options.tls, interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, config.ws_port, interface=interface)
    ListeningService("websocket", endpoint, signaling.site()).setServiceParent(root)
    return root
