"""Socket.IO v5 on top of Engine.IO sessions.

This layer turns Engine.IO messages into namespace connections, events and
acknowledgements, and calls the application of each namespace through
:class:`jsongle.interfaces.ISocketApplication`.  It knows nothing of JSONgle.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle.engineio.session import FORCED_CLOSE, PARSE_ERROR, SERVER_SHUTDOWN, TRANSPORT_CLOSE, EngineSession
from jsongle.interfaces import ConnectRefused, IConnection, ISocketApplication
from jsongle.randompool import SessionIds
from jsongle.socketio import packet as sio
from jsongle.socketio.packet import Packet
from jsongle.socketio.recovery import (
    RECOVERED, REFUSED, RESUMABLE, UNKNOWN, Item, Recovery, ResumableSession, disabled_recovery, encoded_size,
)

CLIENT_DISCONNECT = "client namespace disconnect"
SERVER_DISCONNECT = "server namespace disconnect"
INVALID_NAMESPACE = "Invalid namespace"


@implementer(IConnection)
class Connection:
    """One client connected to one namespace: the IConnection an application talks to."""

    __slots__ = (
        "id", "namespace", "client", "application", "accepted", "state", "received_size", "resumable",
        "_event", "_head", "_pending", "_acks", "_next_ack",
    )

    def __init__(self, sid: str, namespace: str, client: "SocketIOClient", application: ISocketApplication) -> None:
        #: The Socket.IO socket id (sent in the CONNECT reply).
        self.id = sid
        self.namespace = namespace
        self.client = client
        #: The namespace's application (what events are handed to).
        self.application = application
        #: The event the application's messages travel as.
        self._event: str = application.event_name
        #: Its EVENTs up to their argument: what :meth:`send_json` completes.
        self._head = sio.event_head(self._event, namespace)
        self.accepted = False
        #: Free for the application (e.g. its per-connection session).
        self.state: Any = None
        #: Encoded bytes of the packet being handled (set before ``event``).
        self.received_size = 0
        #: Its connection state recovery (pid, log), when it opted in.
        self.resumable: Optional[ResumableSession] = None
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
        resumable = self.resumable
        if resumable is not None and resumable.away:
            return "none"
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
        """IConnection: one message as the application's event (with its
        offset last when the connection is resumable)."""
        resumable = self.resumable
        if resumable is None:
            return self.emit(self._event, message)
        if resumable.parked:
            return self._forward(sio.dumps_bytes(message))
        args = [self._event, message, resumable.log.stamp()]
        try:
            text = sio.encode_plain(sio.EVENT, self.namespace, args)
        except TypeError:  # binary attachments
            items = sio.encode(Packet(sio.EVENT, self.namespace, args))
            size = encoded_size(items)
            self.client.server.recovery.logged(resumable, items, size)
            self._send_items(items)
            return size
        self.client.server.recovery.logged(resumable, text, len(text))
        self._send_text(text)
        return len(text)

    def send_json(self, data: bytes) -> int:
        """IConnection: one message the application encoded to UTF-8 JSON."""
        resumable = self.resumable
        if resumable is None:
            # encode_json_event, inline: this runs once per message relayed.
            message = b"".join((self._head, data, b"]"))
        elif resumable.parked:
            return self._forward(data)
        else:
            log = resumable.log
            message = log.keep_event(self._head, data)
            if log.overflowed:
                self.client.server.recovery.over(resumable)
        self._send_text(message)
        return len(message)

    def _forward(self, body: bytes) -> int:
        """Its session went to another process (or is going): the message follows it there."""
        assert self.resumable is not None
        return self.client.server.recovery.forward(self.resumable, self._head, body)

    def release_transport(self) -> None:
        """Let go of the transport carrying it, without ending its session (a
        newer connection takes the session over)."""
        client = self.client
        if client.connections.get(self.namespace) is self:
            del client.connections[self.namespace]
            client.session.close(FORCED_CLOSE)

    def close(self) -> None:
        """IConnection: a server kick (DISCONNECT, then the session closes);
        it does not resume."""
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
        elif self.resumable is not None and self.resumable.away and not self.resumable.ended:
            # Kicked while away: it ends now, as a live one would.
            self.client.server.recovery.end(self.resumable)
            self.client.server.call(self.application.disconnect, self, SERVER_DISCONNECT)
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
        reply: dict[str, str] = {"sid": self.id}
        if self.resumable is not None:
            reply["pid"] = self.resumable.pid
            self.client.server.recovery.keep(self.resumable)
        self.client.session.send_many(sio.encode(Packet(sio.CONNECT, self.namespace, reply)))
        for items in pending or ():
            self._send_items(items)

    def _resume(self, missed: list[Item]) -> None:
        """Taken back by its (new) client: the CONNECT reply with its pid, then
        what it missed, in one write."""
        assert self.resumable is not None
        messages: list[Any] = sio.encode(Packet(sio.CONNECT, self.namespace, {"sid": self.id, "pid": self.resumable.pid}))
        for item in missed:
            if isinstance(item, bytes):
                messages.append(item.decode("utf-8"))
            else:
                messages.extend(item)
        self.client.session.send_many(messages)

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
        if data.__class__ is str and data[:2] == "2[" and self._reassembler.idle:
            # Nearly every packet (sio.is_plain_event): straight to the
            # application, no Packet built; what _event and call do, inline.
            try:
                args = sio.plain_event_args(data)
            except sio.PacketError as exc:
                self._bad_packet(exc)
                return
            connection = self.connections.get("/")
            if connection is not None and connection.accepted:
                connection.received_size = len(data) if data.isascii() else len(data.encode("utf-8"))
                try:
                    connection.application.event(connection, args[0], args[1:], None)
                except Exception:
                    self.server.log.failure("application {method} failed", method="event")
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

    def on_pong(self) -> None:
        """The client has what was sent before its previous pong: resumable logs let it go."""
        for connection in self.connections.values():
            resumable = connection.resumable
            if resumable is not None:
                resumable.log.acknowledged()

    def on_close(self, reason: str) -> None:
        self._cancel_connect_timer()
        connections, self.connections = self.connections, {}
        recovery = self.server.recovery
        for connection in connections.values():
            if not connection.accepted:
                continue
            resumable = connection.resumable
            if resumable is not None and resumable.parked:
                continue  # going to another process: it does not end here
            if resumable is not None and reason in RESUMABLE:
                recovery.went_away(resumable, reason)
                self.server.call(connection.application.away, connection, reason)
                continue
            if resumable is not None:
                recovery.end(resumable)
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
        auth = auth if auth is not None else {}
        connection = Connection(self.server.ids.new(), namespace, self, application)
        self.connections[namespace] = connection
        recovery = self.server.recovery
        if recovery.enabled and "pid" in auth:
            # It comes back for a session: find it first (the store may be remote).
            found = maybeDeferred(recovery.find, auth.get("pid"), namespace, auth.get("offset"))
            found.addCallback(self._take_back, connection, auth)
            found.addErrback(self._refused, connection)
            return
        self._start(connection, auth)

    def _start(self, connection: Connection, auth: dict[str, Any]) -> None:
        """A new connection: its application admits it (or refuses)."""
        recovery = self.server.recovery
        if recovery.wanted(auth):
            connection.resumable = recovery.new_session(connection)
        result = maybeDeferred(connection.application.connect, connection, auth)
        result.addCallbacks(self._accepted, self._refused, callbackArgs=(connection,), errbackArgs=(connection,))

    # -- connection state recovery -------------------------------------------

    def _still_waiting(self, provisional: Connection) -> bool:
        return self.connections.get(provisional.namespace) is provisional and not self.session.closed

    def _take_back(self, session: Optional[ResumableSession], provisional: Connection, auth: dict[str, Any]) -> None:
        """The session a CONNECT asks back: its application authenticates the client again."""
        if not self._still_waiting(provisional):
            return
        if session is None:
            if self.server.recovery.can_park:
                self._take_over(provisional, auth)
            else:
                self._fresh(provisional, auth)
            return
        connection = session.connection
        result = maybeDeferred(connection.application.resume, connection, self.session.remote, auth)
        result.addCallbacks(
            self._resumed, self._resume_refused,
            callbackArgs=(session, provisional, auth), errbackArgs=(provisional,),
        )

    def _take_over(self, provisional: Connection, auth: dict[str, Any]) -> None:
        """Not held here: maybe another process of the cluster holds it, or parked it."""
        recovery = self.server.recovery
        pid, namespace, application = auth.get("pid"), provisional.namespace, provisional.application
        found = recovery.take_over(pid, namespace, auth.get("offset"), self.session.remote, auth)

        def admit(parked: Optional[dict[str, Any]]) -> Any:
            if parked is None or not self._still_waiting(provisional):
                return None
            admitted = application.admit_resume(parked["state"], self.session.remote, auth)
            return recovery.claim(pid, auth.get("offset"), namespace).addCallback(
                self._adopt, pid, admitted, provisional, auth
            )

        def failed(failure: Failure) -> None:
            if failure.check(ConnectRefused):
                self._resume_refused(failure, provisional)
                return
            self.log.failure("taking a session over failed", failure)
            if self._still_waiting(provisional):
                self._fresh(provisional, auth)

        found.addCallback(admit).addCallbacks(
            lambda adopted: None if adopted or not self._still_waiting(provisional) else self._fresh(provisional, auth),
            failed,
        )

    def _adopt(
        self, claimed: Optional[dict[str, Any]], pid: str, admitted: Any, provisional: Connection, auth: dict[str, Any]
    ) -> bool:
        """The session is this process's now (its missed packets in hand): it
        carries on here, under its socket id. Runs as the claim arrives, before
        anything forwarded to it afterwards."""
        if claimed is None:
            return False
        recovery = self.server.recovery
        connection = Connection(claimed["sid"], provisional.namespace, self, provisional.application)
        missed = claimed["missed"]
        connection.resumable = session = recovery.adopted(pid, connection, claimed["last"], missed)
        connection.accepted = True
        connection._pending = None
        connection.application.adopt(connection, claimed["state"], admitted)
        if not self._still_waiting(provisional):
            # Its client went again meanwhile: it is away, here now.
            recovery.went_away(session, TRANSPORT_CLOSE)
            self.server.call(connection.application.away, connection, TRANSPORT_CLOSE)
            return True
        self._carry_on(connection, missed, ", taken over from another process")
        return True

    def _fresh(self, provisional: Connection, auth: dict[str, Any]) -> None:
        """Nothing to take back (unknown, forged, expired pid, or an offset
        the log cannot serve): a new session, as for any CONNECT."""
        recovery = self.server.recovery
        recovery.outcome(UNKNOWN)
        self.log.info("{remote}: no session to resume, starting a new one", remote=self.session.remote)
        self._start(provisional, auth)

    def _resume_refused(self, failure: Failure, provisional: Connection) -> None:
        if failure.check(ConnectRefused):
            self.server.recovery.outcome(REFUSED)
            self.log.info(
                "{remote}: resume refused ({why})", remote=self.session.remote, why=failure.value.message
            )
        self._refused(failure, provisional)

    def _resumed(self, _: object, session: ResumableSession, provisional: Connection, auth: dict[str, Any]) -> None:
        if not self._still_waiting(provisional):
            return  # this client went away meanwhile; the session stays as it was
        recovery = self.server.recovery
        missed = recovery.missed(session, auth.get("offset"))
        if session.ended or missed is None:
            self._fresh(provisional, auth)
            return
        connection = session.connection
        if connection.client is not self:
            # Still live on an older transport: the newest connection wins,
            # the older transport is closed without ending the session.
            connection.release_transport()
        recovery.back(session)
        connection.client = self
        self._carry_on(connection, missed)

    def _carry_on(self, connection: Connection, missed: list[Item], origin: str = "") -> None:
        """A resumed connection is this client's: what it missed, then live traffic."""
        self.connections[connection.namespace] = connection
        connection._resume(missed)
        self.server.recovery.outcome(RECOVERED)
        self.log.info(
            "{sid} resumed from {remote}{origin}: {count} missed packet(s) delivered",
            sid=connection.id, remote=self.session.remote, origin=origin, count=len(missed),
        )

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
                if connection.resumable is not None:
                    self.server.recovery.end(connection.resumable)
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
        recovery: Optional[Recovery] = None,
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
        #: Connection state recovery (off unless given one with a window).
        self.recovery = recovery if recovery is not None else disabled_recovery(ids, clock)

    def on_engine_open(self, session: EngineSession) -> None:
        session.listener = SocketIOClient(self, session)

    def shutdown(self, sessions: Iterable[EngineSession]) -> Deferred:
        """Server shutdown: close every Engine.IO transport, as socket.io does.

        No Socket.IO DISCONNECT: clients see "transport close" and reconnect
        by themselves (to another process behind the same address). In a
        cluster, resumable sessions (live or away) are parked first, so they
        resume on the process their client reaches; the others' applications
        are told their connections ended, and so are those of sessions away
        when they cannot be parked (the store of this process goes with it).
        The Deferred fires once the sessions are parked.
        """
        recovery = self.recovery
        parked = recovery.park_all() if recovery.can_park else None
        for session in sessions:
            session.close(SERVER_SHUTDOWN)
        if parked is None:
            recovery.shutdown(SERVER_SHUTDOWN)
            return succeed(None)
        return parked

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
