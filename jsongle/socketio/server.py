"""Socket.IO v5 on top of Engine.IO sessions.

This layer turns Engine.IO messages into namespace connections, events and
acknowledgements, and calls the application of each namespace through
:class:`jsongle.interfaces.ISocketApplication`.  It knows nothing of JSONgle.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsongle.engineio.server import new_sid
from jsongle.engineio.session import FORCED_CLOSE, PARSE_ERROR, EngineSession
from jsongle.interfaces import ISocketApplication
from jsongle.socketio import packet as sio
from jsongle.socketio.packet import Packet

CLIENT_DISCONNECT = "client namespace disconnect"
SERVER_DISCONNECT = "server namespace disconnect"
INVALID_NAMESPACE = "Invalid namespace"


class ConnectRefused(Exception):
    """Raised by an application's ``connect`` to refuse a client.

    The client's ``connect_error`` handler sees ``message`` (and ``data``).
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class Connection:
    """One client connected to one namespace: what an application talks to."""

    __slots__ = ("sid", "namespace", "client", "accepted", "state", "_pending", "_acks", "_next_ack")

    def __init__(self, sid: str, namespace: str, client: "SocketIOClient") -> None:
        self.sid = sid
        self.namespace = namespace
        self.client = client
        self.accepted = False
        #: Free for the application (e.g. its per-connection session).
        self.state: Any = None
        self._pending: Optional[list[list[Any]]] = []
        self._acks: dict[int, Callable[..., None]] = {}
        self._next_ack = 0

    @property
    def remote(self) -> str:
        return self.client.session.remote

    @property
    def transport(self) -> str:
        return self.client.session.transport.name

    @property
    def connected(self) -> bool:
        return self.accepted and self.client.connections.get(self.namespace) is self

    def emit(self, event: str, *args: Any, callback: Optional[Callable[..., None]] = None) -> None:
        """Send an event; ``callback`` receives the client's acknowledgement."""
        ack_id = None
        if callback is not None:
            ack_id = self._next_ack
            self._next_ack += 1
            self._acks[ack_id] = callback
        self._send(Packet(sio.EVENT, self.namespace, [event, *args], ack_id))

    def disconnect(self, close: bool = False) -> None:
        """Disconnect this client from the namespace (and the server if ``close``)."""
        if self.client.connections.get(self.namespace) is self:
            self._send(Packet(sio.DISCONNECT, self.namespace))
            self.client.detach(self, SERVER_DISCONNECT)
        if close:
            self.client.session.close(FORCED_CLOSE)

    def _send(self, packet: Packet) -> None:
        if self._pending is not None and packet.type != sio.CONNECT:
            self._pending.append(packet)  # type: ignore[arg-type]
            return
        self.client.session.send_many(sio.encode(packet))

    def _accept(self) -> None:
        self.accepted = True
        pending, self._pending = self._pending, None
        self.client.session.send_many(sio.encode(Packet(sio.CONNECT, self.namespace, {"sid": self.sid})))
        for packet in pending or ():
            self._send(packet)  # type: ignore[arg-type]

    def _ack_callback(self, ack_id: int) -> Callable[..., None]:
        sent = []

        def ack(*args: Any) -> None:
            if not sent and self.connected:
                sent.append(True)
                self._send(Packet(sio.ACK, self.namespace, list(args), ack_id))

        return ack


class SocketIOClient:
    """The Socket.IO state of one Engine.IO session (its namespaces)."""

    __slots__ = ("server", "session", "connections", "_reassembler", "_connect_timer")

    log = Logger()

    def __init__(self, server: "SocketIOServer", session: EngineSession) -> None:
        self.server = server
        self.session = session
        self.connections: dict[str, Connection] = {}
        self._reassembler = sio.Reassembler()
        self._connect_timer: Optional[IDelayedCall] = None
        self._start_connect_timer()

    # -- Engine.IO listener ------------------------------------------------

    def on_message(self, data: Any) -> None:
        try:
            packet = self._reassembler.feed(data)
        except sio.PacketError as exc:
            self.log.info("closing {sid}: bad Socket.IO packet ({why})", sid=self.session.sid, why=exc)
            self.session.close(PARSE_ERROR)
            return
        if packet is not None:
            self._dispatch(packet)

    def on_close(self, reason: str) -> None:
        self._cancel_connect_timer()
        connections, self.connections = self.connections, {}
        for connection in connections.values():
            if connection.accepted:
                self.server.call(connection, "disconnect", reason)

    # -- packets -----------------------------------------------------------

    def _dispatch(self, packet: Packet) -> None:
        kind = packet.type
        if kind == sio.EVENT or kind == sio.BINARY_EVENT:
            connection = self.connections.get(packet.namespace)
            if connection is None or not connection.accepted:
                return
            ack = connection._ack_callback(packet.id) if packet.id is not None else None
            self.server.call(connection, "event", packet.data[0], packet.data[1:], ack)
        elif kind == sio.ACK or kind == sio.BINARY_ACK:
            connection = self.connections.get(packet.namespace)
            callback = connection._acks.pop(packet.id, None) if connection else None  # type: ignore[arg-type]
            if callback is not None:
                try:
                    callback(*packet.data)
                except Exception:
                    self.log.failure("ack callback failed")
        elif kind == sio.CONNECT:
            self._connect(packet.namespace, packet.data)
        elif kind == sio.DISCONNECT:
            connection = self.connections.get(packet.namespace)
            if connection is not None:
                self.detach(connection, CLIENT_DISCONNECT)
        else:  # CONNECT_ERROR comes only from servers
            self.session.close(PARSE_ERROR)

    def _connect(self, namespace: str, auth: Optional[dict[str, Any]]) -> None:
        application = self.server.namespaces.get(namespace)
        if application is None:
            self._refuse(namespace, ConnectRefused(INVALID_NAMESPACE))
            return
        if namespace in self.connections:
            return  # a duplicate CONNECT: ignore it
        self._cancel_connect_timer()
        connection = Connection(new_sid(), namespace, self)
        self.connections[namespace] = connection
        result = maybeDeferred(application.connect, connection, auth if auth is not None else {})
        result.addCallbacks(self._accepted, self._refused, callbackArgs=(connection,), errbackArgs=(connection,))

    def _accepted(self, _: object, connection: Connection) -> None:
        if self.connections.get(connection.namespace) is not connection or self.session.closed:
            return
        connection._accept()

    def _refused(self, failure: Failure, connection: Connection) -> None:
        if self.connections.get(connection.namespace) is connection:
            del self.connections[connection.namespace]
        if failure.check(ConnectRefused):
            refusal = failure.value
        else:
            self.log.failure("connect handler failed", failure)
            refusal = ConnectRefused("internal error")
        if not self.session.closed:
            self._refuse(connection.namespace, refusal)

    def _refuse(self, namespace: str, refusal: ConnectRefused) -> None:
        body: dict[str, Any] = {"message": refusal.message}
        if refusal.data is not None:
            body["data"] = refusal.data
        self.session.send_many(sio.encode(Packet(sio.CONNECT_ERROR, namespace, body)))
        if not self.connections:
            self._start_connect_timer()

    def detach(self, connection: Connection, reason: str) -> None:
        """Forget a namespace connection and tell its application."""
        if self.connections.get(connection.namespace) is connection:
            del self.connections[connection.namespace]
            if connection.accepted:
                self.server.call(connection, "disconnect", reason)

    # -- connect timeout ---------------------------------------------------

    def _start_connect_timer(self) -> None:
        self._cancel_connect_timer()
        self._connect_timer = self.server.clock.callLater(self.server.connect_timeout, self._connect_timed_out)

    def _cancel_connect_timer(self) -> None:
        timer, self._connect_timer = self._connect_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if not self.connections:
            self.session.close(FORCED_CLOSE)


class SocketIOServer:
    """Attaches Socket.IO to every new Engine.IO session."""

    log = Logger()

    def __init__(
        self,
        namespaces: Mapping[str, ISocketApplication],
        clock: IReactorTime,
        connect_timeout: float = 45.0,
    ) -> None:
        self.namespaces = dict(namespaces)
        self.clock = clock
        self.connect_timeout = connect_timeout

    def on_engine_open(self, session: EngineSession) -> None:
        session.listener = SocketIOClient(self, session)

    def call(self, connection: Connection, method: str, *args: Any) -> None:
        """Call the application; its exceptions are logged, never raised here."""
        application = self.namespaces[connection.namespace]
        try:
            getattr(application, method)(connection, *args)
        except Exception:
            self.log.failure("application {method} failed", method=method)


__all__ = ["ConnectRefused", "Connection", "SocketIOServer"]
