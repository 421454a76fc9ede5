"""One Engine.IO session: heartbeats, the carrying transport and the upgrade.

The session knows nothing of HTTP or WebSocket framing: a transport is any
object with ``name``, ``send(packets)`` and ``close()``.  It knows nothing of
Socket.IO either: it hands each MESSAGE to its ``listener``.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet
from jsongle.engineio.timers import FixedDelayTimers, Timer, cancel

class Transport(Protocol):
    """What a session needs from the transport that carries it."""

    name: str

    def send(self, packets: list[Packet]) -> None: ...

    def send_text(self, message: bytes) -> None:
        """One text MESSAGE whose data is already UTF-8 (see :meth:`EngineSession.send_text`)."""

    def close(self, notify: bool = True) -> None: ...

    #: True when the transport still serves the session once it has ended
    #: (long-polling: the last GET fetches what was queued, the CLOSE
    #: included); such a transport is kept. Taken as False when absent.
    lingers: bool


class ClosedTransport:
    """What an ended session holds instead of its transport: the name only.

    A session outlives its transport when its client may resume (the layer
    above keeps it, away, for the resume window); it must not keep the
    connection's objects alive with it.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, packets: list[Packet]) -> None:
        pass

    def send_text(self, message: bytes) -> None:
        pass

    def close(self, notify: bool = True) -> None:
        pass


#: One stand-in per transport name, shared by every ended session.
_CLOSED: dict[str, ClosedTransport] = {}


class SessionOwner(Protocol):
    """What a session needs of the registry that owns it (the EngineServer)."""

    options: Any
    clock: IReactorTime
    #: Shared heartbeat timers: ``pingInterval`` and ``pingTimeout`` after now.
    pings: FixedDelayTimers
    ping_timeouts: FixedDelayTimers

    def retain(self, session: "EngineSession") -> None: ...

    def forget(self, session: "EngineSession") -> None: ...


class Listener(Protocol):
    """What a session tells the layer above (Socket.IO)."""

    def on_message(self, data: eio.Data) -> None: ...

    def on_close(self, reason: str) -> None: ...

    def on_pong(self) -> None:
        """The client answered a ping: it has every packet sent before that ping."""


# Reasons a session ends, as Engine.IO and Socket.IO name them.
TRANSPORT_CLOSE = "transport close"
#: The client closed its WebSocket saying it goes away (1001: a page closed
#: or left): it will not come back for this session.
CLIENT_GONE = "transport close (client going away)"
TRANSPORT_ERROR = "transport error"
PING_TIMEOUT = "ping timeout"
PARSE_ERROR = "parse error"
FORCED_CLOSE = "forced close"
SERVER_SHUTDOWN = "server shutting down"


class EngineSession:
    """The server side of one Engine.IO connection, whatever carries it."""

    __slots__ = (
        "sid",
        "remote",
        "transport",
        "listener",
        "closed",
        "close_reason",
        "upgrading",
        "server",
        "_clock",
        "_timer",
    )

    log = Logger()

    def __init__(
        self,
        sid: str,
        server: SessionOwner,
        transport: Transport,
        clock: IReactorTime,
        remote: str,
    ) -> None:
        self.sid = sid
        self.remote = remote
        self.transport = transport
        self.listener: Optional[Listener] = None
        self.closed = False
        #: Why the session ended (one of the reasons above), once closed.
        self.close_reason: Optional[str] = None
        self.upgrading = False
        self.server = server
        self._clock = clock
        #: The heartbeat timer under way (the next ping, or the wait for its pong).
        self._timer: Optional[Timer] = None

    # -- lifecycle ---------------------------------------------------------

    def open(self, upgrades: list[str]) -> None:
        """Send the open packet and start the heartbeat."""
        options = self.server.options
        handshake = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": options.ping_interval,
            "pingTimeout": options.ping_timeout,
            "maxPayload": options.max_payload,
        }
        self.transport.send([Packet(eio.OPEN, orjson.dumps(handshake).decode("ascii"))])
        self._timer = self.server.pings.call_later(self._ping)

    def close(self, reason: str = FORCED_CLOSE) -> None:
        """End the session from the server side and tell the listener."""
        if self.closed:
            return
        self._finish(reason)
        self.transport.close()
        self._let_go()

    def transport_lost(self, transport: Transport, reason: str) -> None:
        """The carrying transport went away under us."""
        if transport is self.transport and not self.closed:
            self._finish(reason)
            self._let_go()

    def _let_go(self) -> None:
        """Ended: the transport (and its connection) need not live as long as
        we do, unless it still has the last packets to hand over."""
        if getattr(self.transport, "lingers", False):
            return
        name = self.transport.name
        closed = _CLOSED.get(name)
        if closed is None:
            closed = _CLOSED[name] = ClosedTransport(name)
        self.transport = closed

    def _finish(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        cancel(self._timer)
        self._timer = None
        self.server.forget(self)
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.on_close(reason)
            except Exception:
                self.log.failure("closing session {sid} failed", sid=self.sid)

    # -- heartbeat ---------------------------------------------------------

    def _ping(self) -> None:
        self._timer = self.server.ping_timeouts.call_later(self._ping_timed_out)
        self.transport.send([Packet(eio.PING)])

    def _ping_timed_out(self) -> None:
        self._timer = None
        self.log.info("session {sid} timed out", sid=self.sid)
        self.close(PING_TIMEOUT)

    def _pong(self) -> None:
        cancel(self._timer)
        self._timer = self.server.pings.call_later(self._ping)
        listener = self.listener
        if listener is not None:
            listener.on_pong()

    # -- traffic -----------------------------------------------------------

    def send(self, data: eio.Data) -> None:
        """Send one MESSAGE (text or binary) to the client."""
        if not self.closed:
            self.transport.send([Packet(eio.MESSAGE, data)])

    def send_text(self, message: bytes) -> None:
        """Send one text MESSAGE the layer above encoded to UTF-8 itself.

        What is relayed is encoded once for all its recipients, straight to
        UTF-8 bytes; they go to the wire without a round trip through ``str``.
        """
        if not self.closed:
            self.transport.send_text(message)

    def send_many(self, items: list[eio.Data]) -> None:
        """Send several MESSAGEs at once (one polling response, fewer writes)."""
        if not self.closed and items:
            self.transport.send([Packet(eio.MESSAGE, data) for data in items])

    def receive(self, received: Packet) -> None:
        """Handle one packet from the current transport."""
        kind = received.type
        if kind == eio.MESSAGE:
            self.receive_message(received.data)
        elif kind == eio.PONG:
            self._pong()
        elif kind == eio.CLOSE:
            # The client leaves: nothing more to tell it.
            if not self.closed:
                self._finish(TRANSPORT_CLOSE)
                self.transport.close(notify=False)
                self._let_go()
        elif kind == eio.PING:
            # Not sent by v4 clients outside a probe; answer politely.
            self.transport.send([Packet(eio.PONG, received.data)])
        elif kind == eio.NOOP:
            pass
        else:  # OPEN or UPGRADE on an open session
            self.log.info("session {sid}: unexpected packet {type!r}", sid=self.sid, type=kind)
            self.close(PARSE_ERROR)

    def receive_message(self, data: eio.Data) -> None:
        """Handle the data of one MESSAGE (what nearly every packet is)."""
        listener = self.listener
        if listener is not None:
            listener.on_message(data)

    def upgrade(self, transport: Transport, pending: list[Packet]) -> None:
        """Move the session onto ``transport`` and deliver what was waiting."""
        self.transport = transport
        self.upgrading = False
        if pending:
            transport.send(pending)

    def describe(self) -> dict[str, Any]:
        """A small debug view (tests and the REST API read it)."""
        return {"sid": self.sid, "transport": self.transport.name, "remote": self.remote}
