"""The Engine.IO session registry: handshakes, lookups and forgetting.

Transports (polling, WebSocket) call in here; the layer above is reached
through ``on_open``, which attaches a listener to each new session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from twisted.internet.interfaces import IReactorTime

from twisted.internet.defer import Deferred, succeed

from jsongle.engineio.pollturns import PollTurns
from jsongle.engineio.session import SERVER_SHUTDOWN, TRANSPORT_CLOSE, EngineSession, Transport
from jsongle.engineio.timers import FixedDelayTimers
from jsongle.randompool import SessionIds


@dataclass(frozen=True)
class EngineOptions:
    """What the open packet announces and the transports enforce."""

    ping_interval: int = 25000
    ping_timeout: int = 20000
    max_payload: int = 1000000
    upgrade_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()
    #: Bytes queued for one client (either transport) before it is dropped.
    max_buffered_bytes: int = 1048576


class EngineServer:
    """Owns every live Engine.IO session of this process."""

    def __init__(
        self,
        options: EngineOptions,
        clock: IReactorTime,
        on_open: Callable[[EngineSession], None],
        ids: SessionIds,
        turns: Optional[PollTurns] = None,
    ) -> None:
        self.options = options
        self.clock = clock
        #: The reactor's poll step when it is ours: WebSocket frames leave at
        #: the end of its events (None: by a ``callLater(0)``).
        self.turns = turns
        self.ids = ids
        self._on_open = on_open
        self._sessions: dict[str, EngineSession] = {}
        #: Every session's next ping, and every wait for a pong: one reactor timer each.
        self.pings = FixedDelayTimers(clock, options.ping_interval / 1000.0)
        self.ping_timeouts = FixedDelayTimers(clock, options.ping_timeout / 1000.0)
        self._drain_waiters: list[Deferred[None]] = []

    def open(self, transport: Transport, remote: str, upgrades: list[str]) -> EngineSession:
        """Start a session on ``transport``: open packet, heartbeat, listener."""
        sid = self.ids.new()
        session = EngineSession(sid, self, transport, self.clock, remote)
        self._sessions[sid] = session
        session.open(upgrades)
        self._on_open(session)
        return session

    def find(self, sid: str) -> Optional[EngineSession]:
        return self._sessions.get(sid)

    def retain(self, session: EngineSession) -> None:
        """Keep a closed session findable until its transport lets go."""
        self._sessions[session.sid] = session

    def forget(self, session: EngineSession) -> None:
        if self._sessions.get(session.sid) is session:
            del self._sessions[session.sid]
            if self._drain_waiters and self.drained():
                waiters, self._drain_waiters = self._drain_waiters, []
                for waiter in waiters:
                    if not waiter.called:  # not timed out meanwhile
                        waiter.callback(None)

    def drained(self) -> bool:
        """True when no session is left but those whose client closed them
        (kept only to answer a GET racing the client's close)."""
        return all(session.close_reason == TRANSPORT_CLOSE for session in self._sessions.values())

    def when_drained(self) -> "Deferred[None]":
        """Fires once :meth:`drained` (at once if it is): the shutdown waits on this."""
        if self.drained():
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drain_waiters.append(waiter)
        return waiter

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[EngineSession]:
        return iter(list(self._sessions.values()))

    def close_all(self, reason: str = SERVER_SHUTDOWN) -> None:
        """Close every session (shutdown)."""
        for session in self:
            session.close(reason)
