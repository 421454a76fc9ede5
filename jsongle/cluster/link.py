"""Two connections to Redis that come back by themselves.

One connection carries commands (scripts, PUBLISH, heartbeats); the other is
subscribed to this node's channel, since a subscribed Redis connection takes
no other command.  Both are re-opened with an exponential back-off timed on
the injected clock, and the owner hears ``up`` once both are usable and
``down`` as soon as either is lost, so it can refuse work that needs Redis.

The protocol objects come from txredisapi; only this module knows it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple, Optional, Protocol

import txredisapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger

from jsongle.config import RedisAddress


def redis_endpoint(reactor: Any, address: RedisAddress, timeout: float) -> Any:
    """TCP to Redis; for ``rediss://``, TLS on top with the server's
    certificate checked against ``redisCaFile`` (or the system's CAs)."""
    endpoint: Any = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
    if not address.tls:
        return endpoint
    from twisted.internet import ssl

    trust: Any = None
    if address.ca_file:
        with open(address.ca_file, "rb") as handle:
            trust = ssl.trustRootFromCertificates(_certificates(handle.read()))
    options = ssl.optionsForClientTLS(address.host, trustRoot=trust)
    return wrapClientTLS(options, endpoint)


def _certificates(pem: bytes) -> list[Any]:
    """Every certificate of a PEM bundle."""
    from twisted.internet import ssl

    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
    return [ssl.Certificate.loadPEM(block) for block in blocks]


class RedisUnavailable(Exception):
    """Redis cannot be reached now; the caller answers with 503001."""


class Backoff:
    """Delays between reconnection attempts: doubling from ``first`` up to ``most``."""

    def __init__(self, first: float = 0.1, most: float = 2.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.most, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


class _KeepsLoss:
    """Remembers why the connection was lost: txredisapi only says "Lost
    connection", which hides a TLS handshake that failed (untrusted CA)."""

    lost_reason: Any = None

    def connectionLost(self, reason: Any) -> None:
        self.lost_reason = reason
        super().connectionLost(reason)  # type: ignore[misc]


class _Commands(_KeepsLoss, txredisapi.RedisProtocol):
    """The command connection."""


class _Subscriber(_KeepsLoss, txredisapi.SubscriberProtocol):
    """Hands each published message to ``on_message(channel, data)``."""

    on_message: Callable[[str, str], None] = staticmethod(lambda channel, data: None)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.on_message(channel, message)


class _Slot:
    """One connection: opened, watched, re-opened after a back-off."""

    log = Logger()

    def __init__(
        self, name: str, make: Callable[[], Any], reactor: IReactorTCP, clock: IReactorTime,
        address: RedisAddress, backoff: Backoff, changed: Callable[[], None], prepare: Callable[[Any], Deferred],
        connect_timeout: float,
    ) -> None:
        self.name = name
        self._connect_timeout = connect_timeout
        self._make = make
        self._reactor = reactor
        self._clock = clock
        self._address = address
        self._backoff = backoff
        self._changed = changed
        self._prepare = prepare
        self.protocol: Optional[Any] = None
        self._retry: Any = None
        self._stopped = True
        self._attempts = 0

    @property
    def ready(self) -> bool:
        return self.protocol is not None

    def start(self) -> None:
        self._stopped = False
        self._connect()

    def stop(self) -> Deferred:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        protocol, self.protocol = self.protocol, None
        if protocol is None or protocol.transport is None:
            return succeed(None)
        done = protocol.whenDisconnected()
        protocol.transport.loseConnection()
        return done

    def _connect(self) -> None:
        self._retry = None
        if self._stopped:
            return
        self._attempts += 1
        endpoint = redis_endpoint(self._reactor, self._address, self._connect_timeout)
        protocol = self._make()
        connectProtocol(endpoint, protocol).addCallback(lambda _: protocol.whenConnected()).addCallback(
            self._prepare
        ).addCallbacks(lambda _: self._opened(protocol), lambda failure: self._failed(protocol, failure))

    def _opened(self, protocol: Any) -> None:
        if self._stopped:
            protocol.transport.loseConnection()
            return
        if self._attempts > 1:
            self.log.info("redis {name} connection restored", name=self.name)
        self._attempts = 0
        self._backoff.reset()
        self.protocol = protocol
        protocol.whenDisconnected().addCallback(lambda _: self._lost(protocol))
        self._changed()

    def _failed(self, protocol: Any, failure: Any) -> None:
        if protocol.transport is not None:
            protocol.transport.loseConnection()
        if self._attempts == 1:
            error = failure.getErrorMessage()
            lost = getattr(protocol, "lost_reason", None)
            if lost is not None and failure.check(txredisapi.ConnectionError) and not lost.check(ConnectionDone):
                error = f"{error}: {lost.getErrorMessage()}"
            self.log.warn("redis {name} connection failed: {error}", name=self.name, error=error)
        self._schedule()

    def _lost(self, protocol: Any) -> None:
        if self.protocol is not protocol:
            return
        self.protocol = None
        if not self._stopped:
            self.log.warn("redis {name} connection lost; reconnecting", name=self.name)
        self._changed()
        self._schedule()

    def _schedule(self) -> None:
        if not self._stopped and self._retry is None:
            self._retry = self._clock.callLater(self._backoff.next(), self._connect)


class LinkListener(Protocol):
    """Who a link reports to (the cluster node), given when it starts."""

    def link_up(self) -> None:
        """Both connections are usable (again)."""

    def link_down(self) -> None:
        """A connection was lost: work that needs Redis must be refused."""

    def received(self, raw: str) -> None:
        """A message published on the link's channel."""


class LinkTimeouts(NamedTuple):
    """Config ``redisConnectTimeout``, ``redisReplyTimeout``: seconds."""

    connect: float = 5.0
    reply: float = 10.0


class RedisLink:
    """Commands and one subscription to Redis; reports to the listener it was started with."""

    def __init__(
        self, address: RedisAddress, channel: str, reactor: Any, clock: IReactorTime,
        failed: Callable[..., None], timeouts: LinkTimeouts,
        backoff_first: float = 0.1, backoff_most: float = 2.0,
    ) -> None:
        self.address = address
        self.clock = clock
        self.reply_timeout = timeouts.reply
        self.channel = channel
        #: ``failed(what, error, warn)``: a PUBLISH that could not be sent (Metrics.failed).
        self._failed = failed
        self._listener: Optional[LinkListener] = None
        self._up = False
        #: PUBLISHes fail in streaks (Redis away): each is counted, the first said.
        self._publish_failing = False
        #: Lua script -> its SHA-1 (EVALSHA).
        self._digests: dict[str, str] = {}

        def subscriber() -> Any:
            protocol = _Subscriber(replyTimeout=None)
            protocol.on_message = lambda channel, data: self._message(data)
            return protocol

        self._commands = _Slot(
            "command", lambda: _Commands(replyTimeout=None), reactor, clock, address,
            Backoff(backoff_first, backoff_most), self._changed, self._authenticate, timeouts.connect,
        )
        self._subscription = _Slot(
            "subscriber", subscriber, reactor, clock, address,
            Backoff(backoff_first, backoff_most), self._changed, self._subscribe, timeouts.connect,
        )

    @property
    def up(self) -> bool:
        return self._up

    def start(self, listener: LinkListener) -> None:
        """Connect, and from now on report to ``listener``."""
        self._listener = listener
        self._commands.start()
        self._subscription.start()

    def _message(self, data: str) -> None:
        if self._listener is not None:
            self._listener.received(data)

    def stop(self) -> Deferred:
        from twisted.internet.defer import gatherResults

        self._up = False
        return gatherResults([self._commands.stop(), self._subscription.stop()])

    def _authenticate(self, protocol: Any) -> Deferred:
        """AUTH and SELECT by hand: txredisapi's own would reach for its
        factory, and knows no ACL user (``AUTH user password``, Redis 6)."""
        result: Deferred = succeed(None)
        address = self.address
        if address.password is not None:
            credentials = (address.username, address.password) if address.username else (address.password,)
            result.addCallback(lambda _: protocol.execute_command("AUTH", *credentials))
        if self.address.db:
            result.addCallback(lambda _: protocol.execute_command("SELECT", self.address.db))
        return result

    def _subscribe(self, protocol: Any) -> Deferred:
        return self._authenticate(protocol).addCallback(lambda _: protocol.subscribe(self.channel))

    def _changed(self) -> None:
        up = self._commands.ready and self._subscription.ready
        if up == self._up:
            return
        self._up = up
        if up:
            self._publish_failing = False
        if self._listener is not None:
            (self._listener.link_up if up else self._listener.link_down)()

    # -- commands ----------------------------------------------------------

    def command(self, *args: Any) -> Deferred:
        """Run one Redis command; fails with RedisUnavailable when not connected."""
        protocol = self._commands.protocol
        if protocol is None:
            return fail(RedisUnavailable("redis is not connected"))
        try:
            result = protocol.execute_command(*args)
        except txredisapi.ConnectionError as error:
            return fail(RedisUnavailable(str(error)))
        return self._guard(protocol, result)

    def script(self, source: str, keys: list[str], args: list[Any]) -> Deferred:
        """Run a Lua script (EVALSHA, loading it on first use).

        Its SHA-1 is worked out once per script, not at every call (the
        scripts are kilobytes: that was a few microseconds per join, leave
        or message kept for a parked session)."""
        protocol = self._commands.protocol
        if protocol is None:
            return fail(RedisUnavailable("redis is not connected"))
        digest = self._digests.get(source)
        if digest is None:
            digest = self._digests[source] = hashlib.sha1(source.encode("utf-8")).hexdigest()
        try:
            if digest in protocol.script_hashes:
                result = protocol.evalsha(digest, keys, args)
                result.addErrback(self._load, protocol, source, keys, args)
            else:
                result = protocol.eval(source, keys, args)
        except txredisapi.ConnectionError as error:
            return fail(RedisUnavailable(str(error)))
        return self._guard(protocol, result)

    @staticmethod
    def _load(failure: Any, protocol: Any, source: str, keys: list[str], args: list[Any]) -> Deferred:
        """Redis forgot the script (SCRIPT FLUSH, a restart): load it again."""
        failure.trap(txredisapi.ScriptDoesNotExist)
        return protocol.eval(source, keys, args)

    def _guard(self, protocol: Any, result: Deferred) -> Deferred:
        """A Redis that stops answering is as good as gone: drop the
        connection after ``reply_timeout`` s, which fails every pending
        command and starts the reconnection."""

        def hung() -> None:
            if protocol.transport is not None:
                protocol.transport.abortConnection()

        timer = self.clock.callLater(self.reply_timeout, hung)

        def settled(outcome: Any) -> Any:
            if timer.active():
                timer.cancel()
            return outcome

        return result.addBoth(settled).addErrback(_unavailable)

    def publish(self, channel: str, data: str) -> None:
        """Fire and forget: a message for a node that Redis cannot carry now is lost."""
        protocol = self._commands.protocol
        if protocol is None:
            self._publish_failed(f"redis is not connected: a message for {channel} is lost")
            return
        try:
            protocol.execute_command("PUBLISH", channel, data).addErrback(
                lambda failure: self._publish_failed(failure.getErrorMessage())
            )
        except txredisapi.ConnectionError as error:
            self._publish_failed(str(error))

    def _publish_failed(self, error: str) -> None:
        self._failed("publish", error, not self._publish_failing)
        self._publish_failing = True


def _unavailable(failure: Any) -> Any:
    if failure.check(txredisapi.ConnectionError):
        raise RedisUnavailable(failure.getErrorMessage())
    return failure
