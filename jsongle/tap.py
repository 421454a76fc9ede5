"""The twistd entry point: options and the service tree.

Only this module touches the real reactor and ``getPlugins``; everything it
builds takes its dependencies as arguments (see :func:`build_site`).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

from prometheus_client import CollectorRegistry
from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from jsongle.collector import tune_collector
from jsongle.config import Config, ConfigError, load_config
from jsongle.dates import IsoDates
from jsongle.engineio.pollturns import PollTurns
from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.logs import ConsoleLevel
from jsongle.metrics import Metrics
from jsongle.randompool import RandomPool, SessionIds
from jsongle.signaling.announcer import Announcer
from jsongle.signaling.application import build_application
from jsongle.signaling.calls import Calls
from jsongle.signaling.bus import LocalBus
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.delivery import Delivery
from jsongle.signaling.handlers import HandlerConflict, HandlerSet, discover
from jsongle.signaling.messages import Messages, RandomIds
from jsongle.signaling.roomrules import RoomCaps
from jsongle.signaling.rooms import InMemoryRoomRegistry
from jsongle.signaling.tokens import TokenVerifier, verifier_from_config
from jsongle.signaling.turn import IceServers, ice_servers_from_config
from jsongle.socketio.recovery import InMemorySessionStore, Recovery
from jsongle.socketio.server import SocketIOServer
from jsongle.startchecks import StartError, check_files, listen_error

log = Logger()

#: The WebSocket/polling port's listen backlog (Node.js uses 511 too).
LISTEN_BACKLOG = 511


class Options(usage.Options):
    """``twistd jsongle --config FILE``: a dotenv file; the environment wins."""

    optParameters = [
        ["config", "c", None, "dotenv configuration file (keys as in etc/jsongle.env)"],
    ]

    def opt_print_config(self) -> None:
        """Print a commented configuration file with every key's default, and exit."""
        from jsongle.config import sample_config

        print(sample_config(), end="")
        raise SystemExit(0)

    def getUsage(self, width: Optional[int] = None) -> str:
        from jsongle.config import help_text

        return super().getUsage(width) + "\n" + help_text(width or 80)

    def postOptions(self) -> None:
        try:
            self.config, self.warnings = load_config(self["config"], os.environ)
        except ConfigError as error:
            raise usage.UsageError(f"bad configuration: {error}")
        try:
            check_files(self.config)
        except StartError as error:
            raise usage.UsageError(str(error))
        if self.config.use_https:
            self.tls = tls_options(self.config)
        try:
            # Built now, so a bad key file, algorithm list or half a TURN setup stops the start by name.
            self.tokens = verifier_from_config(self.config)
            self.ice_servers = ice_servers_from_config(self.config)
        except ConfigError as error:
            raise usage.UsageError(f"bad configuration: {error}")
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
    """Everything one server process runs, built from explicit parts.

    Each part gets its collaborators in its constructor, in this order:
    metrics, the message builder, this process's connections, the bus (to
    other processes), delivery, the announcer, the room registry, then the
    application and the Socket.IO and Engine.IO layers under it.
    """

    def __init__(
        self, config: Config, clock: IReactorTime, handlers: HandlerSet, registry: Optional[CollectorRegistry] = None,
        tokens: Optional[TokenVerifier] = None, ice_servers: Optional[IceServers] = None,
        turns: Optional[PollTurns] = None,
    ) -> None:
        self.config = config
        self.metrics = metrics = Metrics(registry or CollectorRegistry())
        random = RandomPool()
        #: Per-user tokens (None: not required); the self-check (GET /tests) then
        #: shows this random secret instead of a token.
        self.tokens = tokens
        self.self_check = random.take(32).hex() if tokens is not None else ""
        self.dates = IsoDates()
        messages = Messages(config.server_id, RandomIds(random), self.dates.text, clock)
        self.local = local = LocalConnections(metrics)
        caps = RoomCaps(config.max_members_per_room, config.max_members_per_multi_room, config.max_multi_room_per_user)
        #: The cluster node service when redisUrl is set, else None.
        self.cluster: Any = None
        calls = Calls(metrics, local)
        if config.redis_address is None:
            delivery = Delivery(local, LocalBus(), metrics, clock)
            announcer = Announcer(messages, delivery, calls)
            self.rooms: Any = InMemoryRoomRegistry(caps)
        else:
            self.cluster, delivery, announcer = cluster_node(config, clock, caps, metrics, messages, local, calls)
            self.rooms = self.cluster.registry
            metrics.watch_cluster(self.cluster.stats)
        self.application = build_application(
            config, clock, handlers, metrics, messages, local, delivery, self.rooms, announcer, calls, tokens, ice_servers,
            self.self_check,
        )
        ids = SessionIds(random)
        recovery = Recovery(
            InMemorySessionStore(), clock, config.resume_window, config.resume_buffer_bytes, ids, metrics.resume_outcome,
            self.cluster.park if self.cluster is not None else None,
        )
        metrics.watch_away(recovery.away_count)
        self.socketio = SocketIOServer(
            {"/": self.application}, clock, config.connect_timeout / 1000.0, ids, metrics.connect_refused, recovery
        )
        self.engine = EngineServer(
            EngineOptions(
                config.ping_interval,
                config.ping_timeout,
                config.max_payload,
                upgrade_timeout=config.upgrade_timeout,
                cors_origins=config.cors_origins,
                max_buffered_bytes=config.max_buffered_bytes,
            ),
            clock,
            self.socketio.on_engine_open,
            ids,
            turns,
        )
        metrics.watch_sessions(self.engine.__len__)

    def site(self) -> Any:
        from jsongle.demo import demo_children

        return engineio_site(self.engine, children=demo_children(self.config))


def cluster_node(
    config: Config, reactor: Any, caps: RoomCaps, metrics: Metrics, messages: Messages, local: LocalConnections,
    calls: Calls,
) -> tuple[Any, Delivery, Announcer]:
    """The node service of one cluster member (its link, registry and bus), and
    the delivery and announcer that reach the other nodes through it."""
    from jsongle.cluster.bus import RedisBus, node_channel
    from jsongle.cluster.link import LinkTimeouts, RedisLink
    from jsongle.cluster.node import ClusterNode, generated_node_id
    from jsongle.cluster.registry import RedisRoomRegistry
    from jsongle.cluster.sessions import RedisSessionPark
    from jsongle.signaling.application import EVENT_NAME
    from jsongle.socketio.packet import event_head

    address = config.redis_address
    assert address is not None
    node_id = config.node_id or generated_node_id()
    timeouts = LinkTimeouts(config.redis_connect_timeout, config.redis_reply_timeout)
    link = RedisLink(address, node_channel(node_id), reactor, reactor, metrics.failed, timeouts)
    park = RedisSessionPark(
        link, node_id, config.resume_window, config.resume_buffer_bytes, config.redis_reply_timeout,
        metrics.resume_outcome, event_head(EVENT_NAME),
    )
    bus = RedisBus(link, node_id, calls.from_other_node, park.keep_message)
    delivery = Delivery(local, bus, metrics, reactor)
    announcer = Announcer(messages, delivery, calls)
    registry = RedisRoomRegistry(link, node_id, caps, announcer, config.node_timeout)
    node = ClusterNode(link, registry, bus, park, reactor, config.node_timeout, local.__len__, metrics.failed)
    return node, delivery, announcer


class ListeningService(StreamServerEndpointService):
    """Listens and logs the bound address (port 0 picks a free one)."""

    def __init__(self, label: str, endpoint: Any, factory: Any, config: Optional[Config] = None) -> None:
        super().__init__(endpoint, factory)
        self._raiseSynchronously = True
        self.label = label
        self.config = config
        self.port: Any = None
        self._number: Optional[int] = None

    def bound_port(self) -> Optional[int]:
        """The port actually bound while running (wsPort may be 0), else None.

        Kept as a number: a listener closed under a running service cannot
        tell its address any more, and the self-check must then fail to
        connect rather than crash.
        """
        return self._number if self.running else None

    def privilegedStartService(self) -> None:
        from twisted.internet.error import CannotListenError

        try:
            super().privilegedStartService()
        except CannotListenError as error:
            if self.config is None:
                raise
            # One line naming the key, like a bad value, and a failed start.
            raise SystemExit(str(listen_error(self.label, self.config, error))) from None
        self._waitingForPort.addCallback(self._announce)

    def _announce(self, port: Any) -> Any:
        host = port.getHost()
        log.info("{label} listening on {host}:{port}", label=self.label, host=host.host, port=host.port)
        self.port = port
        self._number = host.port
        return port


class JsongleService(service.MultiService):
    """The root service: logs, listeners, SIGHUP reload, orderly shutdown.

    ``reactor`` is only given by the twistd entry point: with it, SIGHUP
    reopens the log file and re-reads ``logDefaultLevel`` from
    ``config_path``, and SIGTERM stops the reactor so that the process exits
    0 after the orderly shutdown (twistd's own handler would re-raise the
    signal and end with -15, which supervisors other than systemd report as
    a crash). Tests call :meth:`reload` directly.
    """

    def __init__(
        self,
        signaling: Signaling,
        console: ConsoleLevel,
        warnings: list[str],
        logfile: Any = None,
        config_path: Optional[str] = None,
        reactor: Any = None,
        twistd_options: Any = None,
    ) -> None:
        super().__init__()
        #: twistd's own options: when given, the console level and the log
        #: file are in place before twistd logs its first line.
        self.twistd_options = twistd_options
        self.signaling = signaling
        self.console = console
        self.warnings = warnings
        self.logfile = logfile
        self.config_path = config_path
        self.reactor = reactor
        self.shutdown_timeout = signaling.config.shutdown_timeout
        self._previous_sighup: Any = None
        self._previous_sigterm: Any = None

    def setServiceParent(self, parent: Any) -> None:
        """twistd asks the application it builds for its log observer first:
        ours, behind logDefaultLevel, with the log file beside it."""
        super().setServiceParent(parent)
        if self.twistd_options is not None and self.logfile is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            from jsongle.twistdlog import observer

            parent.setComponent(ILogObserver, observer(self.twistd_options, self.console, self.logfile))

    def startService(self) -> None:
        from jsongle.logfile import FileLogObserver

        if self.logfile is not None:
            self.logfile.open()
        self.console.install(also=[FileLogObserver(self.logfile)] if self.logfile is not None else [])
        if self.reactor is not None:
            reactor = self.reactor
            self._previous_sighup = signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))
            # The reactor installs its own SIGTERM handler while starting, so
            # ours goes in once it runs.
            reactor.callWhenRunning(self._handle_sigterm)
            reactor.callWhenRunning(tune_collector)
        for warning in self.warnings:
            log.warn("{warning}", warning=warning)
        config = self.signaling.config
        tokens = self.signaling.tokens
        if not config.app_token and tokens is None:
            log.warn("appToken is empty: anyone can connect")
        if not config.admin_token:
            log.info("adminToken is empty: GET /logs and PUT /logs/levels answer loopback clients only")
        if tokens is not None:
            log.info("per-user tokens required: {how}", how=tokens.description)
        if config.turn_secret:
            log.info("TURN credentials handed out for {uris}, valid {ttl}s", uris=",".join(config.turn_uris), ttl=config.turn_ttl)
        if self.signaling.cluster is not None:
            self.signaling.cluster.startService()
        elif config.reuse_port:
            log.warn("reusePort=true without redisUrl: each process sharing wsPort has its own rooms")
        if config.reuse_port and config.resume_window > 0:
            log.warn(
                "reusePort=true with resumeWindow={window:g}s: a client that reconnects to another process "
                "starts afresh and its old session waits out the window",
                window=config.resume_window,
            )
        if not config.use_https:
            log.info("useHTTPS=false: serving plain HTTP/WebSocket (put TLS in front, e.g. a reverse proxy)")
        super().startService()

    def _handle_sigterm(self) -> None:
        reactor = self.reactor
        self._previous_sigterm = signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(self.terminate))

    def terminate(self) -> None:
        """SIGTERM: stop the reactor, which runs :meth:`stopService`."""
        log.info("SIGTERM: shutting down")
        if self.reactor.running:
            self.reactor.stop()

    def reload(self) -> None:
        """SIGHUP: reopen the log file (logrotate) and re-read logDefaultLevel."""
        if self.logfile is not None:
            self.logfile.reopen()
        if self.config_path is not None:
            try:
                config, _ = load_config(self.config_path, os.environ)
            except ConfigError as error:
                log.error("SIGHUP: configuration not reloaded: {error}", error=str(error))
                return
            was = self.console.set(config.log_default_level)
            log.info("SIGHUP: log file reopened, console level {new} (was {was})", new=config.log_default_level, was=was)
        else:
            log.info("SIGHUP: log file reopened")

    def stopService(self) -> Any:
        """Stop listening, close every client's transport, then flush and close the log.

        The Deferred fires once the sessions are gone, or after
        ``shutdown_timeout`` seconds at most.
        """
        from twisted.internet.defer import maybeDeferred

        if self.reactor is not None and self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        result = maybeDeferred(super().stopService)
        result.addErrback(lambda failure: log.failure("stopping the listeners failed", failure))
        result.addCallback(lambda _: self._disconnect_all())
        result.addCallback(lambda _: self._leave_cluster())
        result.addBoth(self._close_logs)
        return result

    def _disconnect_all(self) -> Any:
        """Close every session; wait until they are gone, ``shutdownTimeout`` at most.

        With no session, nothing to wait for. Sessions whose client closed
        them and that only linger for a racing GET are not waited for.
        """
        from twisted.internet.defer import TimeoutError

        engine = self.signaling.engine
        clock = engine.clock
        count = len(engine)
        log.info("shutting down: disconnecting {count} session(s)", count=count)
        # Sessions parked for other processes (a cluster's), before the cluster is left.
        parked = self.signaling.socketio.shutdown(engine)
        if count == 0:
            return parked
        deadline = clock.seconds() + self.shutdown_timeout
        drained = engine.when_drained().addTimeout(self.shutdown_timeout, clock)
        drained.addErrback(lambda failure: failure.trap(TimeoutError))
        drained.addCallback(lambda _: parked)

        def grace(_: Any) -> Any:
            # The last frames leave the socket buffers (bounded by the deadline).
            return deferLater(clock, min(0.2, max(0.0, deadline - clock.seconds())), lambda: None)

        return drained.addCallback(grace)

    def _leave_cluster(self) -> Any:
        """Last, once the clients' leaves are announced: leave the cluster."""
        cluster = self.signaling.cluster
        if cluster is None or not cluster.running:
            return None
        return cluster.stopService()

    def _close_logs(self, result: Any) -> Any:
        from twisted.python.failure import Failure

        if isinstance(result, Failure):
            log.failure("orderly shutdown failed", result)
        log.info("stopped")
        self.console.uninstall()
        if self.logfile is not None:
            self.logfile.close()
        return None


def makeService(options: Options) -> service.IService:
    from twisted.internet import reactor

    config: Config = options.config
    signaling = Signaling(
        config, reactor, options.handlers, tokens=options.tokens, ice_servers=options.ice_servers,
        turns=PollTurns.install(reactor),
    )
    from jsongle.logfile import LogFile

    masked = [config.app_token, getattr(config, "admin_token", ""), config.jwt_secret, config.turn_secret, signaling.self_check]
    logfile = LogFile(config.log_path, config.log_file_period, config.log_files_number, reactor, signaling.metrics.failed)
    console = ConsoleLevel(config.log_default_level, secrets=masked)
    root = JsongleService(signaling, console, options.warnings, logfile, options["config"], reactor, options.parent)
    interface = config.listen_address or ""
    site: Any = signaling.site()
    # Clients reconnect in bursts (after a restart, a network change): a
    # listen backlog like Node.js's, not Twisted's 50, keeps their SYNs.
    if config.reuse_port:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from jsongle.reuseport import ReusePortEndpoint

        endpoint: Any = ReusePortEndpoint(reactor, config.ws_port, interface, backlog=LISTEN_BACKLOG)
        if config.use_https:
            site = TLSMemoryBIOFactory(options.tls, False, site)
    elif config.use_https:
        endpoint = SSL4ServerEndpoint(reactor, config.ws_port, options.tls, backlog=LISTEN_BACKLOG, interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, config.ws_port, backlog=LISTEN_BACKLOG, interface=interface)
    websocket = ListeningService("websocket", endpoint, site, config)
    websocket.setServiceParent(root)
    rest = add_rest_service(root, reactor, config, getattr(options, "tls", None), signaling, console, websocket)
    from jsongle.welcome import Welcome

    Welcome(config, websocket, rest).setServiceParent(root)
    return root


def add_rest_service(
    root: service.MultiService, reactor: Any, config: Config, tls: Any, signaling: Signaling,
    console: ConsoleLevel, websocket: ListeningService,
) -> ListeningService:
    """The REST API on restPort, over TLS exactly when the WebSocket port is."""
    import time

    from jsongle.rest import RestApi
    from jsongle.selfcheck import SelfCheck

    check = SelfCheck(
        reactor, websocket.bound_port, config.listen_address, config.app_token, config.use_https, timeout=config.self_check_timeout,
        self_check=signaling.self_check,
    )
    api = RestApi(config, signaling.metrics, console, reactor, time.time(), check)
    interface = config.listen_address or ""
    if config.use_https:
        endpoint = SSL4ServerEndpoint(reactor, config.rest_port, tls, interface=interface)
    else:
        endpoint = TCP4ServerEndpoint(reactor, config.rest_port, interface=interface)
    rest = ListeningService("rest", endpoint, Site(api.resource()), config)
    rest.setServiceParent(root)
    return rest
