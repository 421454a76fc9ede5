"""The JSONgle application behind the Socket.IO ``/`` namespace.

It admits connections (appToken, capacity), greets them with session-hello,
runs the checks on every message in the documented order and hands the
message to the handler that claims it.  Handlers get an
:class:`HandlerRequest`, never a transport.
"""

from __future__ import annotations

import hmac
from inspect import iscoroutine
from typing import Any, Callable, NoReturn, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle import DESCRIPTION, __version__
from jsongle.config import Config
from jsongle.dates import iso_date
from jsongle.interfaces import IHandlerRequest, IMessageBus, IRoomRegistry, ISocketApplication
from jsongle.metrics import Metrics
from jsongle.signaling import errors
from jsongle.signaling import messages as m
from jsongle.signaling.bus import LocalBus
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.fields import FieldLimits, message_problem
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.member import Member
from jsongle.signaling.ratelimit import FailedAttempts, FloodGuard, RatePolicy, Verdict
from jsongle.signaling.rooms import LeaveResult, Room, RoomMember
from jsongle.socketio.packet import dumps_bytes
from jsongle.socketio.server import ConnectRefused, Connection

EVENT_NAME = "jsongle"
TOO_MANY_ATTEMPTS = "too many attempts"


def _is_member(connection_id: str, room: Room) -> bool:
    for member in room.members:
        if member.connection_id == connection_id:
            return True
    return False


@implementer(IHandlerRequest)
class HandlerRequest:
    """One received message, with what its handler may use."""

    __slots__ = ("app", "message", "jsongle", "member", "room", "received_at")

    def __init__(
        self, app: "SignalingApplication", message: dict, member: Member, room: Optional[Room], received_at: float = 0.0
    ) -> None:
        self.app = app
        self.message = message
        self.jsongle: dict[str, Any] = message["jsongle"]
        self.member = member
        self.room = room
        #: clock.seconds() when the message arrived (relay latency).
        self.received_at = received_at

    rooms = property(lambda self: self.app.rooms)
    config = property(lambda self: self.app.config)
    metrics = property(lambda self: self.app.metrics)
    clock = property(lambda self: self.app.clock)
    server_id = property(lambda self: self.app.config.server_id)

    @property
    def reply_to(self) -> str:
        """Answers go to the sender's ``from`` (echoed, never used for routing)."""
        sender = self.message.get("from")
        return sender if isinstance(sender, str) else self.member.connection_id

    def now(self) -> str:
        return iso_date(self.app.clock.seconds())

    def reply(self, message: dict[str, Any]) -> None:
        self.member.deliver(message)

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        self.app.send(connection_id, message)

    def send_to(self, member: RoomMember, message: dict[str, Any]) -> None:
        self.app.send_to(member, message)

    def relay(self, message: dict[str, Any]) -> int:
        """Copy ``message`` to the room's other members; returns how many."""
        room = self.room
        if room is None:
            return 0
        sender = self.member
        own = sender.connection_id
        targets = [target for target in room.members if target.connection_id != own]
        if not targets:
            return 0
        if self.jsongle.get("namespace") == m.MUC:
            origin = f"{room.rid}/{sender.uid}"
        else:
            origin = room.rid
        app = self.app
        app.send_copies(targets, message, origin)
        count = len(targets)
        metrics = app.metrics
        metrics.relay_latency.observe(app.clock.seconds() - self.received_at)
        action = self.jsongle.get("action")
        metrics.relayed.add(action if action.__class__ is str else "", count)
        return count

    def announce_join(self, rid: str, kind: str, member: RoomMember, targets: tuple[RoomMember, ...]) -> None:
        """Tell ``targets`` that ``member`` joined ``rid`` (the join handler tells its own)."""
        for target in targets:
            self.send_to(
                target,
                m.event(self.config.server_id, target.connection_id, kind, "joined", {"member": member.identity, "rid": rid}),
            )

    def announce_leave(self, result: LeaveResult) -> None:
        self.app.announce_leave(result)

    def error(self, code: int, details: str) -> None:
        """Answer the sender with a session-error."""
        self.reply(m.session_error(self.server_id, self.reply_to, code, details))


@implementer(ISocketApplication)
class SignalingApplication:
    """JSONgle over Socket.IO: admission, hello, checks, dispatch, cleanup."""

    log = Logger()

    def __init__(
        self,
        config: Config,
        rooms: IRoomRegistry,
        handlers: HandlerSet,
        metrics: Metrics,
        clock: IReactorTime,
        bus: IMessageBus = LocalBus(),
    ) -> None:
        self.config = config
        self.rooms = rooms
        self.bus = bus
        self.handlers = handlers
        self.metrics = metrics
        self.clock = clock
        self._connections: dict[str, Connection] = {}
        self.limits = FieldLimits(config.max_id_length, config.max_display_name_length)
        self.rate_policy = RatePolicy(config.rate_limit_per_second, config.rate_limit_burst, config.rate_limit_disconnect)
        self.failed_attempts = FailedAttempts(config.connect_failures_per_ip, config.connect_failure_window)
        metrics.watch_rooms(rooms.room_count)
        metrics.watch_connections(self.connections_on)
        bus.listen(self.send)

    # -- ISocketApplication ------------------------------------------------

    def connect(self, connection: Connection, auth: dict[str, Any]) -> None:
        expected = self.config.app_token
        if expected:
            now = self.clock.seconds()
            address = connection.remote
            # Brute force: once an address used up its failures, its token is not even looked at.
            if self.failed_attempts.blocked(address, now):
                self._refuse(TOO_MANY_ATTEMPTS)
            token = auth.get("appToken")
            if not isinstance(token, str) or not token:
                self.failed_attempts.failed(address, now)
                self._refuse("missing appToken")
            if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
                self.failed_attempts.failed(address, now)
                self._refuse("invalid appToken")
        if len(self._connections) >= self.config.max_concurrent_users:
            self._refuse("server full")
        member = Member(connection.sid, self._deliverer(connection), self.clock.seconds())
        if self.rate_policy.enabled:
            member.flood = FloodGuard(self.rate_policy, member.connected_at)
        connection.state = member
        self._connections[connection.sid] = connection
        self.metrics.users_count.inc()
        self.metrics.users.inc()
        self.log.info("{sid} connected from {remote}", sid=connection.sid, remote=connection.remote)
        member.hello_transaction = m.new_id()
        member.deliver(
            m.iq(
                self.config.server_id,
                connection.sid,
                m.IQ_GET,
                member.hello_transaction,
                "session-hello",
                {
                    "version": __version__,
                    "sn": self.config.server_id,
                    "info": DESCRIPTION,
                    "connected": iso_date(member.connected_at),
                },
            )
        )

    def _refuse(self, reason: str) -> NoReturn:
        self.metrics.connect_refused(reason)
        raise ConnectRefused(reason)

    def event(self, connection: Connection, name: str, args: list[Any], ack: Optional[Callable[..., None]]) -> None:
        member: Member = connection.state
        message = args[0] if args else None
        flood = member.flood
        if flood is not None:
            verdict = flood.admit(self.clock.seconds())
            if verdict is not Verdict.ACCEPT:
                self._over_limit(connection, member, message, verdict)
                return
        if name != EVENT_NAME:
            return
        self.metrics.received_bytes += getattr(connection, "last_size", 0)
        try:
            self.receive(member, message)
        except Exception:
            self.log.failure("handling a message from {sid} failed", sid=member.connection_id)
            self._internal_error(member, message)

    def _over_limit(self, connection: Connection, member: Member, message: Any, verdict: Verdict) -> None:
        """Drop a message over the rate limit; warn once a window, close past the hard limit."""
        self.metrics.rate_limited(verdict.value).inc()
        if verdict is Verdict.WARN:
            self.log.info("{sid} is over the rate limit", sid=member.connection_id)
            sender = message.get("from") if isinstance(message, dict) else None
            reply_to = sender if isinstance(sender, str) else member.connection_id
            member.deliver(m.session_error(self.config.server_id, reply_to, errors.TOO_MANY_MESSAGES, "Too many messages"))
        elif verdict is Verdict.CLOSE:
            self.log.warn("disconnecting {sid} from {remote}: flooding past the hard rate limit", sid=member.connection_id, remote=connection.remote)
            connection.disconnect(close=True)

    def disconnect(self, connection: Connection, reason: str) -> None:
        member: Member = connection.state
        if self._connections.pop(connection.sid, None) is None:
            return
        self.metrics.users_count.dec()
        self.metrics.duration.inc(max(0.0, self.clock.seconds() - member.connected_at) / 60.0)
        self.log.info("{sid} disconnected ({reason})", sid=connection.sid, reason=reason)
        self.rooms.leave_all(connection.sid).addCallbacks(
            self._announce_leaves, lambda f: self.log.failure("leaving rooms failed", f)
        )

    # -- delivery ----------------------------------------------------------

    def _deliverer(self, connection: Connection) -> Callable[[dict[str, Any]], None]:
        metrics = self.metrics

        def deliver(message: dict[str, Any]) -> None:
            metrics.sent_bytes += connection.emit(EVENT_NAME, message) or 0

        return deliver

    def send(self, connection_id: str, message: dict[str, Any]) -> None:
        """Deliver to a connection of this process (unknown ids are gone: dropped)."""
        connection = self._connections.get(connection_id)
        if connection is not None:
            self.metrics.sent_bytes += connection.emit(EVENT_NAME, message) or 0

    def send_to(self, member: RoomMember, message: dict[str, Any]) -> None:
        """Deliver to a room member, here or through the bus on its node."""
        connection = self._connections.get(member.connection_id)
        if connection is not None:
            self.metrics.sent_bytes += connection.emit(EVENT_NAME, message) or 0
        elif member.node and member.node != self.bus.node_id:
            self.bus.send(member.node, member.connection_id, message)

    def send_copies(self, targets: list[RoomMember], message: dict[str, Any], origin: str) -> None:
        """A copy of ``message`` to each target, ``from`` = origin, ``to`` = the target.

        The copies differ only in ``to``, so for the members connected here
        the rest is encoded once.
        """
        copy = dict(message)
        copy.pop("to", None)
        copy["from"] = origin
        rest: Optional[bytes] = None
        try:
            rest = dumps_bytes(copy)[1:]
        except TypeError:  # binary attachments: the Socket.IO encoder handles them
            pass
        metrics = self.metrics
        connections = self._connections
        for target in targets:
            connection = connections.get(target.connection_id)
            if connection is not None and rest is not None:
                # Connection ids are URL-safe tokens: nothing to escape.
                metrics.sent_bytes += connection.emit_json(EVENT_NAME, b'{"to":"' + target.connection_id.encode("ascii") + b'",' + rest)
            else:
                self.send_to(target, dict(copy, to=target.connection_id))

    def connection_count(self) -> int:
        return len(self._connections)

    def connections_on(self, transport: str) -> int:
        """Connected clients carried by ``transport`` now (read at scrape time)."""
        return sum(1 for c in self._connections.values() if getattr(c, "transport", None) == transport)

    # -- the checks, in order ----------------------------------------------

    def receive(self, member: Member, message: Any) -> None:
        received_at = self.clock.seconds()
        server_id = self.config.server_id
        reply_to = member.connection_id
        if isinstance(message, dict):
            sender = message.get("from")
            if isinstance(sender, str):
                reply_to = sender
        # 1. a JSONgle message at all?
        if not isinstance(message, dict) or not isinstance(message.get("jsongle"), dict):
            member.deliver(m.session_error(server_id, reply_to, errors.NO_JSONGLE_DATA, "Missing property 'jsongle' in message"))
            return
        # 1b. ids of the right type and length (never trusted further down)?
        problem = message_problem(message, self.limits)
        if problem is not None:
            member.deliver(m.session_error(server_id, reply_to, errors.BAD_PARAMETERS, problem))
            return
        jsongle = message["jsongle"]
        action = jsongle.get("action")
        is_hello = action == m.IQ_RESULT and jsongle.get("query") == "session-hello"
        # 2. registered (hello done)?
        if not member.registered and not is_hello:
            member.deliver(
                m.session_error(
                    server_id, reply_to, errors.NOT_REGISTERED, "session-hello message was not received or was not complete"
                )
            )
            return
        to = message.get("to")
        room: Optional[Room] = None
        if to != server_id and not is_hello:
            room = self.rooms.room(to) if isinstance(to, str) else None
            # 3. a member of the target room?
            if room is None or not _is_member(member.connection_id, room):
                member.deliver(m.session_error(server_id, reply_to, errors.NOT_A_MEMBER, f"Can't call - not in room {to}"))
                return
            # 4. anybody to talk to (P2P rooms)?
            if room.kind == m.ROOM and len(room.members) < 2:
                handler = self.handlers.action(action)
                if handler is not None and handler.call:
                    member.deliver(m.session_info(server_id, reply_to, jsongle, "unreachable", {"ended": iso_date(self.clock.seconds())}))
                else:
                    member.deliver(
                        m.session_error(
                            server_id, reply_to, errors.NO_OTHER_MEMBER, f"Can't transmit message - no other member in room {to}"
                        )
                    )
                return
        request = HandlerRequest(self, message, member, room, received_at)
        if action == m.IQ_SET or action == m.IQ_RESULT:
            self._query(request, action)
            return
        # 5. a supported action?
        handler = self.handlers.action(action)
        if handler is None:
            request.error(errors.ACTION_NOT_ALLOWED, f"Message of type {action} is not supported")
            return
        self._run(handler, request)

    def _run(self, handler: Any, request: HandlerRequest) -> None:
        """Call an action handler; most answer at once, without a Deferred."""
        try:
            result = handler.handle(request)
        except Exception:
            self._handler_failed(Failure(), request)
            return
        if result is not None:
            maybeDeferred(lambda: result).addErrback(self._handler_failed, request)

    def _query(self, request: HandlerRequest, action: str) -> None:
        query = request.jsongle.get("query")
        handler = self.handlers.query(action, query)
        if action == m.IQ_RESULT:
            if handler is not None:
                self._run(handler, request)
            return
        if handler is None:
            self._iq_answer(request, m.IQ_ERROR, JsongleError(errors.UNKNOWN_QUERY, f"The query '{query}' is not supported").describe())
            return
        try:
            result = handler.handle(request)
        except Exception:
            self._query_failed(Failure(), request)
            return
        if isinstance(result, Deferred):  # what the room registry answers
            result.addCallbacks(self._iq_result, self._query_failed, callbackArgs=(request,), errbackArgs=(request,))
        elif isinstance(result, Failure) or iscoroutine(result):
            maybeDeferred(lambda: result).addCallbacks(
                self._iq_result, self._query_failed, callbackArgs=(request,), errbackArgs=(request,)
            )
        else:
            self._iq_answer(request, m.IQ_RESULT, result)

    def _iq_result(self, result: Any, request: HandlerRequest) -> None:
        self._iq_answer(request, m.IQ_RESULT, result)

    def _iq_answer(self, request: HandlerRequest, action: str, description: Any) -> None:
        jsongle = request.jsongle
        if action == m.IQ_ERROR:
            code = description.get("errorCode") if isinstance(description, dict) else None
            self.metrics.iq_errors(str(code)).inc()
        request.reply(
            m.iq(self.config.server_id, request.reply_to, action, jsongle.get("transaction"), jsongle.get("query"), description)
        )

    def _query_failed(self, failure: Failure, request: HandlerRequest) -> None:
        if failure.check(JsongleError):
            self._iq_answer(request, m.IQ_ERROR, failure.value.describe())
        else:
            self._handler_failed(failure, request)

    def _handler_failed(self, failure: Failure, request: HandlerRequest) -> None:
        if failure.check(JsongleError):
            request.error(failure.value.code, failure.value.details)
            return
        self.log.failure("handler failed on a message from {sid}", failure, sid=request.member.connection_id)
        request.error(errors.INTERNAL_ERROR, "internal error")

    def _internal_error(self, member: Member, message: Any) -> None:
        reply_to = message.get("from") if isinstance(message, dict) and isinstance(message.get("from"), str) else member.connection_id
        member.deliver(m.session_error(self.config.server_id, reply_to, errors.INTERNAL_ERROR, "internal error"))

    # -- leaving -----------------------------------------------------------

    def _announce_leaves(self, results: list[LeaveResult]) -> None:
        for result in results:
            self.announce_leave(result)

    def announce_join(self, rid: str, kind: str, member: RoomMember, targets: tuple[RoomMember, ...]) -> None:
        """Tell ``targets`` that ``member`` joined ``rid`` (the join handler tells its own)."""
        for target in targets:
            self.send_to(
                target,
                m.event(self.config.server_id, target.connection_id, kind, "joined", {"member": member.identity, "rid": rid}),
            )

    def announce_leave(self, result: LeaveResult) -> None:
        """Tell the remaining members (conferences_count reads the registry)."""
        for target in result.remaining:
            self.send_to(
                target,
                m.event(self.config.server_id, target.connection_id, result.kind, "left", {"member": result.left.identity, "rid": result.rid}),
            )
