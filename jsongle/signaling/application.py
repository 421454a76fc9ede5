"""The JSONgle application behind the Socket.IO ``/`` namespace.

A thin :class:`ISocketApplication`: admission (:mod:`.admission`), the
greeting (:mod:`.greeting`), the rate limit (:mod:`.overlimit`), the checks
and dispatch (:mod:`.checks`, :mod:`.dispatch`) and leaving rooms on
disconnect (:mod:`.announcer`) are parts of their own; this class calls them
in order. :func:`build_application` wires them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jsongle.config import Config
from jsongle.interfaces import IConnection, IRoomRegistry, ISocketApplication
from jsongle.metrics import Metrics
from jsongle.signaling.admission import Admission
from jsongle.signaling.announcer import Announcer
from jsongle.signaling.calls import Calls
from jsongle.signaling.checks import MessageChecks
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.delivery import Delivery
from jsongle.signaling.dispatch import Dispatcher
from jsongle.signaling.greeting import Greeting
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.member import Member
from jsongle.signaling.messages import Messages
from jsongle.signaling.overlimit import OverLimit
from jsongle.signaling.ratelimit import FloodGuard, RatePolicy, Verdict
from jsongle.signaling.request import Context
from jsongle.signaling.tokens import TokenVerifier
from jsongle.signaling.turn import IceServers

EVENT_NAME = "jsongle"
#: A resume whose per-user token names another user than the session's.
RESUME_OTHER_USER = "token does not match the session"


@implementer(ISocketApplication)
class SignalingApplication:
    """JSONgle over Socket.IO: admit, greet, check and dispatch, leave rooms."""

    event_name = EVENT_NAME
    log = Logger()

    def __init__(
        self, context: Context, local: LocalConnections, admission: Admission, greeting: Greeting,
        checks: MessageChecks, over_limit: OverLimit,
    ) -> None:
        self.context = context
        self.local = local
        self.admission = admission
        self.greeting = greeting
        self.checks = checks
        self.over_limit = over_limit
        self._clock = context.clock
        self._metrics = context.metrics
        config = context.config
        self.rate_policy = RatePolicy(config.rate_limit_per_second, config.rate_limit_burst, config.rate_limit_disconnect)

    # -- ISocketApplication ------------------------------------------------

    def connect(self, connection: IConnection, auth: dict[str, Any]) -> None:
        claims = self.admission.admit(connection.remote, auth)
        context = self.context
        now = context.clock.seconds()
        member = Member(connection, now, FloodGuard(self.rate_policy, now) if self.rate_policy.enabled else None, claims)
        connection.state = member
        self.local.add(connection)
        context.metrics.users_count.inc()
        context.metrics.users.inc()
        self.log.info("{sid} connected from {remote}", sid=connection.id, remote=connection.remote)
        self.local.send_on(connection, self.greeting.hello(member))

    def event(self, connection: IConnection, name: str, args: list[Any], ack: Optional[Callable[..., None]]) -> None:
        member: Member = connection.state
        message = args[0] if args else None
        flood = member.flood
        if flood is not None:
            verdict = flood.admit(self._clock.seconds())
            if verdict is not Verdict.ACCEPT:
                self.over_limit.handle(member, message, verdict)
                return
        if name != EVENT_NAME:
            return
        self._metrics.received_bytes += connection.received_size
        self.checks.receive(member, message)

    def away(self, connection: IConnection, reason: str) -> None:
        """Its transport was lost but it may resume: it stays in its rooms,
        registered; what is sent to it waits in the Socket.IO layer (which
        logs the absence: one line is enough)."""

    def resume(self, connection: IConnection, remote: str, auth: dict[str, Any]) -> None:
        """It comes back: admitted as a connect is (same checks, same refusals),
        its Member carries on with its identity, rooms and rate budget.

        With per-user tokens, the token it comes back with must name the same
        user (a fresh one, later expiry, is how a long call outlives a token);
        its claims replace the old ones for what comes next."""
        claims = self.admission.admit(remote, auth, returning=True)
        member: Member = connection.state
        if member.claims is not None and (claims is None or claims.sub != member.claims.sub):
            self.admission.refuse(RESUME_OTHER_USER)
        member.claims = claims

    # -- a session moving between processes (cluster) ------------------------

    def export(self, connection: IConnection) -> dict[str, Any]:
        """What another process needs to carry the member on: its identity
        and the claims it was admitted with (its rooms are in the registry)."""
        member: Member = connection.state
        state: dict[str, Any] = {"at": member.connected_at, "hello": member.hello_transaction}
        if member.registered:
            state["uid"] = member.uid
            state["identity"] = member.identity
        if member.claims is not None:
            state["sub"] = member.claims.sub
        calls = self.context.calls.of(connection.id)
        if calls:
            state["calls"] = calls
        return state

    def admit_resume(self, state: dict[str, Any], remote: str, auth: dict[str, Any]) -> Any:
        """A member of another process comes back here: admitted as :meth:`resume` admits."""
        claims = self.admission.admit(remote, auth, returning=True)
        sub = state.get("sub")
        if sub is not None and (claims is None or claims.sub != sub):
            self.admission.refuse(RESUME_OTHER_USER)
        return claims

    def adopt(self, connection: IConnection, state: dict[str, Any], admitted: Any) -> None:
        """The member carries on here, registered as it was."""
        now = self._clock.seconds()
        member = Member(
            connection, float(state.get("at", now)), FloodGuard(self.rate_policy, now) if self.rate_policy.enabled else None,
            admitted,
        )
        member.hello_transaction = state.get("hello")
        uid = state.get("uid")
        if isinstance(uid, str):
            member.register(uid, state.get("identity") or {})
        connection.state = member
        self.local.add(connection)
        self._metrics.users_count.inc()
        self.context.calls.take_over(state.get("calls"))
        self.log.info("{sid} taken over from another process ({remote})", sid=connection.id, remote=connection.remote)

    def handed_off(self, connection: IConnection) -> None:
        """Its session went to another process: not a user here any more, but
        still in its rooms (no ``left``); late messages for it follow it."""
        if self.local.retire(connection.id):
            self._metrics.users_count.dec()
            self.context.calls.hand_over(connection.id)

    def forget(self, connection: IConnection) -> None:
        self.local.forget(connection.id)

    def disconnect(self, connection: IConnection, reason: str) -> None:
        member: Member = connection.state
        if not self.local.remove(connection.id):
            return
        context = self.context
        context.metrics.users_count.dec()
        context.metrics.duration.inc(max(0.0, context.clock.seconds() - member.connected_at) / 60.0)
        self.log.info("{sid} disconnected ({reason})", sid=connection.id, reason=reason)
        context.rooms.leave_all(connection.id).addCallbacks(
            context.announcer.left_all, lambda failure: self.log.failure("leaving rooms failed", failure)
        )


def build_application(
    config: Config, clock: IReactorTime, handlers: HandlerSet, metrics: Metrics, messages: Messages,
    local: LocalConnections, delivery: Delivery, rooms: IRoomRegistry, announcer: Announcer, calls: Calls,
    tokens: Optional[TokenVerifier] = None, ice_servers: Optional[IceServers] = None, self_check: str = "",
) -> SignalingApplication:
    """The application and its parts, from the collaborators the service built
    (the room registry and the bus behind ``delivery`` may be Redis-backed;
    ``tokens`` and ``ice_servers`` come from the JWT and TURN settings)."""
    context = Context(config, clock, metrics, rooms, messages, delivery, announcer, calls)
    application = SignalingApplication(
        context, local, Admission(config, clock, metrics, local, tokens, self_check), Greeting(messages, ice_servers),
        MessageChecks(context, Dispatcher(handlers, messages, metrics)), OverLimit(messages, local, metrics),
    )
    metrics.watch_rooms(rooms.room_count)
    metrics.watch_connections(local.on_transport)
    return application
