"""Socket.IO v5 on top of Engine.IO sessions.

This layer turns Engine.IO messages into namespace connections, events and
acknowledgements, and calls the application of each namespace through
:class:`jsongle.interfaces.ISocketApplication`.  It knows nothing of JSONgle.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle.engineio.session import FORCED_CLOSE, PARSE_ERROR, SERVER_SHUTDOWN, EngineSession
from jsongle.interfaces import ConnectRefused, IConnection, ISocketApplication
from jsongle.randompool import SessionIds
from jsongle.socketio import packet as sio
from jsongle.socketio.packet import Packet

CLIENT_DISCONNECT = "client namespace disconnect"
SERVER_DISCONNECT = "server namespace disconnect"
INVALID_NAMESPACE = "Invalid namespace"


def encoded_size(items: list[Any]) -> int:
    """Bytes of encoded Engine.IO messages (UTF-8 text, binary attachments)."""
    size = 0
    for item in items:
        if isinstance(item, str):
            size += len(item) if item.isascii() else len(item.encode("utf-8"))
        else:
            size += len(item)
    return size


@implementer(IConnection)
class Connection:
    """One client connected to one namespace: the IConnection an application talks to."""

    __slots__ = ("id", "namespace", "client", "application", "accepted", "state", "received_size", "_event", "_pending", "_acks", "_next_ack")

    def __init__(self, sid: str, namespace: str, client: "SocketIOClient", application: ISocketApplication) -> None:
        #: The Socket.IO socket id (sent in the CONNECT reply).
        self.id = sid
        self.namespace = namespace
        self.client = client
        #: The namespace's application (what events are handed to).
        self.application = application
        #: The event the application's messages travel as.
        self._event: str = application.event_name
        self.accepted = False
        #: Free for the application (e.g. its per-connection session).
        self.state: Any = None
        #: Encoded bytes of the packet being handled (set before ``event``).
        self.received_size = 0
        self._pending: Optional[list[list[Any]]] = []
        self._acks: dict[int, Callable[..., None]] = {}
        self._next_ack = 0

    @property
    def sid(self) -> str:
        """The socket id, as Socket.IO names it."""
        return self.id

    @property
    def remote(self) -> str:
        return self.client.session.remote

    @property
    def transport(self) -> str:
        return self.client.session.transport.name

    @property
    def connected(self) -> bool:
        return self.accepted and self.client.connections.get(self.namespace) is self

    def emit(self, event: str, *args: Any, callback: Optional[Callable[..., None]] = None) -> int:
        """Send an event; ``callback`` receives the client's acknowledgement.

        Returns the encoded size in bytes, so the application can count its
        traffic without encoding twice.
        """
        ack_id = None
        if callback is not None:
            ack_id = self._next_ack
            self._next_ack += 1
            self._acks[ack_id] = callback
        try:
            message = sio.encode_plain(sio.EVENT, self.namespace, [event, *args], ack_id)
        except TypeError:  # binary attachments
            items = sio.encode(Packet(sio.EVENT, self.namespace, [event, *args], ack_id))
            self._send_items(items)
            return encoded_size(items)
        self._send_text(message)
        return len(message)

    def send(self, message: Any) -> int:
        """IConnection: one message as the application's event."""
        return self.emit(self._event, message)

    def send_json(self, data: bytes) -> int:
        """IConnection: one message the application encoded to UTF-8 JSON."""
        message = sio.encode_json_event(self._event, data, self.namespace)
        self._send_text(message)
        return len(message)

    def close(self) -> None:
        """IConnection: a server kick (DISCONNECT, then the session closes)."""
        self.disconnect(close=True)

    def emit_json(self, event: str, json_arg: bytes) -> int:
        """Send an event whose one argument is UTF-8 JSON the caller encoded.

        For sending one body to many clients without encoding it for each;
        returns the encoded size in bytes, like :meth:`emit`.
        """
        message = sio.encode_json_event(event, json_arg, self.namespace)
        self._send_text(message)
        return len(message)

    def disconnect(self, close: bool = False) -> None:
        """Disconnect this client from the namespace (and the server if ``close``)."""
        if self.client.connections.get(self.namespace) is self:
            self._send(Packet(sio.DISCONNECT, self.namespace))
            self.client.detach(self, SERVER_DISCONNECT)
        if close:
            self.client.session.close(FORCED_CLOSE)

    def _send(self, packet: Packet) -> None:
        self._send_items(sio.encode(packet))

    def _send_text(self, message: bytes) -> None:
        if self._pending is not None:
            self._pending.append([message.decode("utf-8")])  # delivered after the CONNECT reply
        else:
            self.client.session.send_text(message)

    def _send_items(self, items: list[Any]) -> None:
        if self._pending is not None:
            self._pending.append(items)  # delivered after the CONNECT reply
            return
        self.client.session.send_many(items)

    def _accept(self) -> None:
        self.accepted = True
        pending, self._pending = self._pending, None
        self.client.session.send_many(sio.encode(Packet(sio.CONNECT, self.namespace, {"sid": self.id})))
        for items in pending or ():
            self._send_items(items)

    def _ack_callback(self, ack_id: int) -> Callable[..., None]:
        sent = []

        def ack(*args: Any) -> None:
            if not sent and self.connected:
                sent.append(True)
                self._send(Packet(sio.ACK, self.namespace, list(args), ack_id))

        return ack


class SocketIOClient:
    """The Socket.IO state of one Engine.IO session (its namespaces)."""

    __slots__ = ("server", "session", "connections", "_reassembler", "_connect_timer", "_received")

    log = Logger()

    def __init__(self, server: "SocketIOServer", session: EngineSession) -> None:
        self.server = server
        self.session = session
        self.connections: dict[str, Connection] = {}
        self._reassembler = sio.Reassembler()
        self._connect_timer: Optional[IDelayedCall] = None
        self._received = 0  # bytes of the packet being reassembled
        self._start_connect_timer()

    # -- Engine.IO listener ------------------------------------------------

    def on_message(self, data: Any) -> None:
        if data.__class__ is str and sio.is_plain_event(data) and self._reassembler.idle:
            # Nearly every packet: straight to the application, no Packet built.
            try:
                args = sio.plain_event_args(data)
            except sio.PacketError as exc:
                self._bad_packet(exc)
                return
            self._event(self.connections.get("/"), args, None, len(data) if data.isascii() else len(data.encode("utf-8")))
            return
        if isinstance(data, str):
            self._received += len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            self._received += len(data)
        try:
            packet = self._reassembler.feed(data)
        except sio.PacketError as exc:
            self._bad_packet(exc)
            return
        if packet is not None:
            size, self._received = self._received, 0
            self._dispatch(packet, size)

    def _bad_packet(self, why: Exception) -> None:
        self.log.info("closing {sid}: bad Socket.IO packet ({why})", sid=self.session.sid, why=why)
        self.session.close(PARSE_ERROR)

    def on_close(self, reason: str) -> None:
        self._cancel_connect_timer()
        connections, self.connections = self.connections, {}
        for connection in connections.values():
            if connection.accepted:
                self.server.call(connection.application.disconnect, connection, reason)

    # -- packets -----------------------------------------------------------

    def _dispatch(self, packet: Packet, size: int = 0) -> None:
        kind = packet.type
        if kind == sio.EVENT or kind == sio.BINARY_EVENT:
            self._event(self.connections.get(packet.namespace), packet.data, packet.id, size)
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

    def _event(self, connection: Optional[Connection], args: list[Any], ack_id: Optional[int], size: int) -> None:
        if connection is None or not connection.accepted:
            return
        connection.received_size = size
        ack = connection._ack_callback(ack_id) if ack_id is not None else None
        self.server.call(connection.application.event, connection, args[0], args[1:], ack)

    def _connect(self, namespace: str, auth: Optional[dict[str, Any]]) -> None:
        application = self.server.namespaces.get(namespace)
        if application is None:
            self.server.refused(namespace, INVALID_NAMESPACE)
            self._refuse(namespace, ConnectRefused(INVALID_NAMESPACE))
            return
        if namespace in self.connections:
            return  # a duplicate CONNECT: ignore it
        self._cancel_connect_timer()
        connection = Connection(self.server.ids.new(), namespace, self, application)
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
                self.server.call(connection.application.disconnect, connection, reason)

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
        connect_timeout: float,
        ids: SessionIds,
        on_refused: Callable[[str, str], None],
    ) -> None:
        self.namespaces = dict(namespaces)
        self.clock = clock
        self.connect_timeout = connect_timeout
        #: Where socket ids come from (unguessable, URL-safe).
        self.ids = ids
        #: Called with ``(reason, namespace)`` when this layer refuses a
        #: connection by itself (an unknown namespace); applications count
        #: their own refusals.
        self.on_refused = on_refused

    def on_engine_open(self, session: EngineSession) -> None:
        session.listener = SocketIOClient(self, session)

    def shutdown(self, sessions: Iterable[EngineSession]) -> None:
        """Server shutdown: DISCONNECT every namespace connection, then close.

        Clients see the reason "io server disconnect" and do not reconnect.
        """
        for session in sessions:
            client = session.listener
            if isinstance(client, SocketIOClient):
                for connection in list(client.connections.values()):
                    if connection.accepted:
                        connection.disconnect()
            session.close(SERVER_SHUTDOWN)

    def refused(self, namespace: str, reason: str) -> None:
        try:
            self.on_refused(reason, namespace)
        except Exception:
            self.log.failure("on_refused hook failed")

    def call(self, method: Callable[..., None], connection: Connection, *args: Any) -> None:
        """Call a method of the connection's application; its exceptions are logged, never raised here."""
        try:
            method(connection, *args)
        except Exception:
            self.log.failure("application {method} failed", method=method.__name__)


__all__ = ["ConnectRefused", "Connection", "SocketIOServer"]
