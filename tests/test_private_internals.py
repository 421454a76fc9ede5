"""The private parts of Twisted and Autobahn that jsongle relies on are still there.

The speed work reads and calls a few internals (the TCP write buffer, the
WebSocket parser's state, the log publisher's observers, the endpoint
service's start-up). setup.cfg bounds both packages to the majors CI
tested; when an upgrade moves one of these, this test fails naming it, in
CI, not in production.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogPublisher

from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.websocket import EngineWebSocketFactory
from jsongle.randompool import RandomPool, SessionIds


def missing(owner: Any, names: list[str]) -> list[str]:
    return [name for name in names if not hasattr(owner, name)]


def check(where: str, owner: Any, names: list[str]) -> None:
    gone = missing(owner, names)
    assert not gone, f"{where} no longer has {', '.join(gone)}: jsongle relies on it (see the module that names it)"


@pytest_twisted.inlineCallbacks
def test_twisted_tcp_server_write_buffer():
    """wsframes.write_now writes straight to the socket when Twisted's buffer is empty, and
    close_written closes it at once."""
    accepted: defer.Deferred = defer.Deferred()

    class Accept(protocol.Protocol):
        def connectionMade(self) -> None:
            accepted.callback(self.transport)

    factory = protocol.Factory.forProtocol(Accept)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = yield protocol.ClientCreator(reactor, protocol.Protocol).connectTCP("127.0.0.1", port.getHost().port)
    transport = yield accepted
    try:
        from twisted.internet.tcp import Server

        assert type(transport) is Server, "twisted.internet.tcp.Server is no longer the accepted transport"
        check("twisted.internet.tcp.Server", transport,
              ["_writeDisconnected", "_aborting", "_tempDataLen", "dataBuffer", "offset", "socket", "_shouldShutdown"])
        # wsframes.close_written: a socket closed without shutdown() when this is false.
        assert transport._shouldShutdown is True
        assert transport._tempDataLen == 0 and len(transport.dataBuffer) == transport.offset
    finally:
        transport.loseConnection()
        client.transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_twisted_endpoint_service_start_up():
    """tap.ListeningService raises start-up errors at once and announces the bound port."""
    service = StreamServerEndpointService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), protocol.Factory())
    check("twisted.application.internet.StreamServerEndpointService", service, ["_raiseSynchronously"])
    service._raiseSynchronously = True
    service.privilegedStartService()
    try:
        check("a started StreamServerEndpointService", service, ["_waitingForPort"])
        assert isinstance(service._waitingForPort, defer.Deferred)
    finally:
        yield service.stopService()


def test_twisted_log_publisher_observers():
    """logs.ConsoleLevel takes over the observers twistd installed."""
    publisher = LogPublisher()
    check("twisted.logger.LogPublisher", publisher, ["_observers"])
    assert isinstance(publisher._observers, list)


def test_autobahn_websocket_parser_state():
    """wsframes.FastFrameProtocol reads frames itself and hands the rest to Autobahn's parser."""
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from autobahn.websocket.protocol import WebSocketProtocol

    check("autobahn WebSocketProtocol", WebSocketProtocol, ["STATE_OPEN", "_dataReceived", "_connectionMade", "_fail_connection"])
    check("autobahn WebSocketServerProtocol", WebSocketServerProtocol, ["CONFIG_ATTRS", "_onOpen"])
    engine = EngineServer(EngineOptions(), Clock(), lambda session: None, SessionIds(RandomPool()))
    proto = EngineWebSocketFactory(engine).buildProtocol(None)
    proto.makeConnection(StringTransport())
    check("an autobahn WebSocketServerProtocol after connectionMade", proto,
          ["send_queue", "data", "state", "openHandshakeTimeoutCall", "is_open", "_log"])
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    proto.connectionLost(Failure(ConnectionDone()))
    # Set by FastFrameProtocol when it opens a connection itself, read by Autobahn's parser.
    import inspect

    source = inspect.getsource(inspect.getmodule(WebSocketProtocol))
    for name in ("inside_message", "current_frame", "websocket_version", "websocket_protocol_in_use", "websocket_extensions_in_use"):
        assert f"self.{name}" in source, f"autobahn.websocket.protocol no longer uses {name}: jsongle sets it when it opens a connection"


def test_twistd_default_log_observer():
    """twistdlog builds twistd's usual console observer to put it behind logDefaultLevel."""
    from twisted.scripts import twistd

    check("twisted.scripts.twistd", twistd, ["_SomeApplicationRunner"])
    check("twistd's application runner", twistd._SomeApplicationRunner, ["loggerFactory"])
    logger = twistd._SomeApplicationRunner.loggerFactory({"logger": None, "nodaemon": True, "logfile": None, "syslog": False, "prefix": "twisted"})
    check("twistd's AppLogger", logger, ["_getLogObserver"])


@pytest_twisted.inlineCallbacks
def test_twisted_epoll_poll_step():
    """pollturns.PollTurns runs the epoll reactor's poll step itself: reads
    still arrive, a failing protocol does not stop the loop, and what asked
    to follow a poll's events runs after them."""
    from twisted.internet.epollreactor import EPollReactor

    from jsongle.engineio.pollturns import PollTurns

    assert isinstance(reactor, EPollReactor), "the tests no longer run on the epoll reactor"
    check("twisted.internet.epollreactor.EPollReactor", reactor, ["_poller", "_selectables", "_doReadOrWrite", "doPoll"])
    turns = PollTurns.install(reactor)
    assert turns is not None and reactor.doIteration == turns.poll
    assert PollTurns.install(reactor) is None  # already taken over: not twice
    seen: list[tuple[str, bytes, bool]] = []
    got: defer.Deferred = defer.Deferred()

    class Reader(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            seen.append(("read", data, turns.dispatching))
            turns.after_events(lambda: seen.append(("after", b"", turns.dispatching)) or got.callback(None))

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Reader), interface="127.0.0.1")
    try:
        client = yield protocol.ClientCreator(reactor, protocol.Protocol).connectTCP("127.0.0.1", port.getHost().port)
        client.transport.write(b"ping")
        yield got
        assert seen == [("read", b"ping", True), ("after", b"", False)]
        client.transport.loseConnection()
    finally:
        del reactor.doIteration  # Twisted's own step again
        yield port.stopListening()
    assert reactor.doIteration.__func__ is EPollReactor.doPoll
