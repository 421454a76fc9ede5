"""Connection state recovery: a client that lost its transport takes its
session back.

A connection that opted in (``"resume": true`` in its CONNECT auth) gets a
private session id (``pid``, in the CONNECT reply) and an offset as the last
argument of every event sent to it. Everything sent is kept in a
:class:`PacketLog`, by offset, for a while. When the transport is lost (not
when the client disconnects or is kicked), the session stays away for
``window`` seconds: what is sent to it is logged, not written. A client that
comes back with its ``pid`` and the last offset it got, and that its
application lets in again, gets the same socket id and every packet after
that offset, then live traffic. When the window passes, or the log of an
away session outgrows its bound, the application is told that the connection
ended.

Offsets are decimal counters per session: an offset the log no longer
reaches (too old) or never gave (too new, not a number) cannot resume, and
the client gets a fresh session instead.

In a cluster (an :class:`ISessionPark` given), a client may come back to
another process: that process asks the others for the session, the holder
*parks* it (state, offsets, packets) where the taker claims it, and from
then on what the holder still gets for it is forwarded. A process that
drains parks every session it holds, live or away, so that its clients
resume wherever they reconnect.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from jsongle.engineio.session import PING_TIMEOUT, TRANSPORT_CLOSE
from jsongle.engineio.timers import FixedDelayTimers, Timer, cancel
from jsongle.interfaces import ISessionPark, ISessionStore, ParkedSession
from jsongle.randompool import SessionIds

#: Losses a session may come back from: the network went away under it
#: (TCP closed, no pong). Not the client's own DISCONNECT, not a page that
#: closed its WebSocket going away (1001: its pid is gone with the page), not
#: a server kick (forced close, a client that does not read: transport
#: error), not a parse error, and not this process shutting down (its store
#: goes with it).
RESUMABLE = frozenset({TRANSPORT_CLOSE, PING_TIMEOUT})

WINDOW_PASSED = "resume window passed"
BUFFER_FULL = "resume buffer full"

# jsongle_resumes_total outcomes.
RECOVERED = "recovered"
EXPIRED = "expired"
UNKNOWN = "unknown"
REFUSED = "refused"

#: Encoded Engine.IO messages of one packet: one UTF-8 text, or a list
#: (text then binary attachments).
Item = Union[bytes, list[Any]]

_MAX_OFFSET_DIGITS = 15

#: What a live session's log keeps at most, in bytes. A client that loses
#: its transport can have missed only what was in flight then (the rest it
#: acknowledged with its pongs): what a link holds unacknowledged, well under
#: this for signaling. Past it, the older half goes; a client that missed
#: more gets a fresh session, never a gap. Kept small because every copy
#: kept is memory held that would otherwise be freed at once.
LIVE_BOUND = 128 * 1024

#: How often (in offsets) :meth:`PacketLog.keep_event` looks at a live log's
#: bound: per message it only appends, which keeps the relay path's cost of
#: resume low; the bound is passed by what came between two looks at most.
CHECK_EVERY = 32


def parse_offset(value: object) -> Optional[int]:
    """The offset a client sent back, or None when it is not one of ours.

    A client that got no event yet sends none: that is offset 0.
    """
    if value is None:
        return 0
    if isinstance(value, str) and 0 < len(value) <= _MAX_OFFSET_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return None


def item_size(item: Item) -> int:
    """What :meth:`PacketLog.add` is told of a packet: the length of its
    text, or the bytes of its messages (text then binary attachments)."""
    return len(item) if item.__class__ is not list else encoded_size(item)


def encoded_size(items: list[Any]) -> int:
    """Bytes of encoded Engine.IO messages (UTF-8 text, binary attachments)."""
    size = 0
    for item in items:
        if isinstance(item, str):
            size += len(item) if item.isascii() else len(item.encode("utf-8"))
        else:
            size += len(item)
    return size


class PacketLog:
    """What was sent to one session, by offset, bounded in bytes.

    While the session is live, what its client acknowledged goes (a pong
    answers a ping sent after every packet before the previous pong: TCP
    and the Engine.IO queue keep them in order), and the older half of its
    bytes when :data:`LIVE_BOUND` is passed; while it is away (``holding``),
    nothing is dropped and :meth:`add` tells when ``limit`` is passed.

    One call per packet: the sender stamps it (``last += 1``) and adds it,
    which appends it and counts its bytes; on the relay path,
    :meth:`keep_event` also encodes it, and a live log counts the bytes of
    what it kept that way only every :data:`CHECK_EVERY` offsets, in one
    pass in C: per message it only appends. Where to cut is found when
    cutting, from the packets' own sizes.
    """

    __slots__ = (
        "_items", "first", "last", "_size", "_counted", "_check_at", "limit", "bound", "holding", "overflowed", "_mark",
    )

    def __init__(self, limit: int = 1 << 20) -> None:
        #: The packets of offsets ``first``..``last``.
        self._items: list[Item] = []
        self.first = 1
        #: The last offset given.
        self.last = 0
        #: The bytes of the first ``_counted`` packets, as :meth:`add` was
        #: told them (the others are texts :meth:`keep_event` kept).
        self._size = 0
        self._counted = 0
        #: The offset at which :meth:`keep_event` next looks at the bound.
        self._check_at = CHECK_EVERY
        #: The byte bound while away (``resumeBufferBytes``).
        self.limit = limit
        #: The bound that applies now: the live one, or ``limit`` while away.
        self.bound = min(limit, LIVE_BOUND)
        #: Set while the session is away: everything is kept.
        self.holding = False
        #: Whether the last :meth:`keep_event` took an away log past its bound.
        self.overflowed = False
        #: The last offset at the client's previous pong.
        self._mark = 0

    @property
    def size(self) -> int:
        """The bytes kept."""
        self._count()
        return self._size

    def _count(self) -> None:
        """Count the texts :meth:`keep_event` kept since the last count."""
        items = self._items
        if self._counted < len(items):
            self._size += sum(map(len, items[self._counted:]))
            self._counted = len(items)

    def stamp(self) -> str:
        """The offset of the next packet, as sent on the wire."""
        self.last += 1
        return str(self.last)

    def add(self, item: Item, size: int) -> bool:
        """Keep the packet of offset :attr:`last`; ``size`` is its
        :func:`item_size`. True when this one took an away session's log
        past its bound."""
        self._count()
        self._items.append(item)
        self._counted += 1
        self._size += size
        if self._size > self.bound:
            return self._past_bound(size)
        return False

    def keep_event(self, head: bytes, body: bytes) -> bytes:
        """Stamp, encode and keep an EVENT; returns its Engine.IO message.

        ``head`` is the EVENT up to its argument, ``body`` the argument
        (UTF-8 JSON); the new offset follows as a last argument, a string of
        decimal digits, as socket.io's connection state recovery sends it.
        What the relay path does per message, in one call.

        :attr:`overflowed` tells whether it took an away log past its bound
        (an away log looks at every packet; a live one every
        :data:`CHECK_EVERY`, and may pass its bound by what came between).
        """
        self.last = last = self.last + 1
        message = b"".join((head, body, b',"%d"]' % last))
        self._items.append(message)
        if last >= self._check_at:
            self.overflowed = self._checked(len(message))
        return message

    def _checked(self, size: int) -> bool:
        """:meth:`keep_event` looks at the bound; ``size`` is the packet just kept."""
        self._count()
        self._next_check()
        return self._size > self.bound and self._past_bound(size)

    def _next_check(self) -> None:
        """When :meth:`keep_event` looks next: at the next packet while away, in CHECK_EVERY offsets while live."""
        self._check_at = self.last + (1 if self.holding else CHECK_EVERY)

    def _past_bound(self, size: int) -> bool:
        """The packet of ``size`` bytes just kept took the log past its bound:
        a live log lets go of its older half; True when it took an away log
        past it (the next ones do not)."""
        if self.holding:
            return self._size - size <= self.bound
        # The older half of the bytes goes at once (this runs once in a while).
        self._drop_bytes(self._size - self.bound // 2)
        return False

    def hold(self, holding: bool) -> None:
        """Away (keep everything, up to ``limit``), or live again."""
        self._count()
        self.holding = holding
        self.bound = self.limit if holding else min(self.limit, LIVE_BOUND)
        self._next_check()
        self.overflowed = False

    def _drop_bytes(self, at_least: int) -> None:
        """Drop the oldest packets, as few as make ``at_least`` bytes (all counted)."""
        dropped = count = 0
        for item in self._items:
            # item_size, inline: this runs once per packet kept.
            dropped += len(item) if item.__class__ is not list else encoded_size(item)
            count += 1
            if dropped >= at_least:
                break
        self._forget(count, dropped)

    def _drop_first(self, count: int) -> None:
        """Drop the ``count`` oldest packets."""
        if count > 0:
            self._count()
            dropped = self._items[:count]
            self._forget(len(dropped), sum(map(item_size, dropped)))

    def _forget(self, count: int, size: int) -> None:
        """The ``count`` oldest packets, ``size`` bytes, go (all counted)."""
        del self._items[:count]
        self.first += count
        self._size -= size
        self._counted -= count

    def acknowledged(self) -> None:
        """The client answered a ping: it has what was sent before the
        previous answer (sent before that ping), which goes."""
        if self._mark:
            self._drop_first(self._mark + 1 - self.first)
        self._mark = self.last

    def after(self, offset: int) -> Optional[list[Item]]:
        """Every packet after ``offset``, in order; None when the log cannot
        tell (``offset`` never given, or packets after it already dropped)."""
        if offset > self.last or offset + 1 < self.first:
            return None
        return self._items[offset + 1 - self.first:]

    def kept(self) -> tuple[int, list[Item]]:
        """The offset of the first packet kept, and the packets kept in order."""
        return self.first, self._items[:]

    def __len__(self) -> int:
        return len(self._items)


class ResumableSession:
    """One connection that may come back: its pid, its log, its away timer."""

    __slots__ = ("pid", "connection", "log", "away_reason", "timer", "ended", "parked")

    def __init__(self, pid: str, connection: Any, limit: int = 1 << 20) -> None:
        self.pid = pid
        self.connection = connection
        self.log = PacketLog(limit)
        #: Why its transport was lost, while it is away; None while live.
        self.away_reason: Optional[str] = None
        self.timer: Optional[Timer] = None
        #: Set once it ended for good (disconnect, kick, window passed, handed
        #: to another process).
        self.ended = False
        #: Set once it is being parked for another process: what is sent to
        #: it goes to the park, not to its log.
        self.parked = False

    @property
    def away(self) -> bool:
        return self.away_reason is not None


@implementer(ISessionStore)
class InMemorySessionStore:
    """Resumable sessions of this process, by pid."""

    __slots__ = ("_sessions",)

    def __init__(self) -> None:
        self._sessions: dict[str, ResumableSession] = {}

    def add(self, session: ResumableSession) -> None:
        self._sessions[session.pid] = session

    def get(self, pid: str) -> Optional[ResumableSession]:
        return self._sessions.get(pid)

    def remove(self, session: ResumableSession) -> None:
        if self._sessions.get(session.pid) is session:
            del self._sessions[session.pid]

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Any:
        return iter(list(self._sessions.values()))


class Recovery:
    """Decides and carries out what happens to resumable sessions.

    ``window`` (seconds, 0 turns recovery off) is how long an away session
    waits; ``buffer_bytes`` bounds each session's log; ``on_outcome`` counts
    each outcome (``recovered``, ``expired``, ``unknown``, ``refused``);
    ``park`` (a cluster's) lets sessions move between processes.
    """

    log = Logger()

    def __init__(
        self,
        store: ISessionStore,
        clock: IReactorTime,
        window: float,
        buffer_bytes: int,
        ids: SessionIds,
        on_outcome: Callable[[str], None],
        park: Optional[ISessionPark] = None,
    ) -> None:
        self.store = store
        self.park = park
        self.clock = clock
        self.window = window
        self.buffer_bytes = buffer_bytes
        self.ids = ids
        self.on_outcome = on_outcome
        #: Sessions away now (their count is the jsongle_sessions_away gauge).
        self._away: set[ResumableSession] = set()
        #: Set while this process drains: a session that cannot be parked ends.
        self._draining = False
        #: The away sessions' windows: one delay for all, so one reactor timer.
        self._windows = FixedDelayTimers(clock, window)
        if park is not None and self.enabled:
            park.serve(self._requested)

    def away_count(self) -> int:
        return len(self._away)

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def wanted(self, auth: dict[str, Any]) -> bool:
        """Does this CONNECT opt in (``"resume": true``) on a server that allows it?"""
        return self.window > 0 and auth.get("resume") is True

    def new_session(self, connection: Any) -> ResumableSession:
        """A session for a connection being accepted (kept once accepted: :meth:`keep`)."""
        return ResumableSession(self.ids.new(), connection, self.buffer_bytes)

    def keep(self, session: ResumableSession) -> None:
        self.store.add(session)

    def logged(self, session: ResumableSession, item: Item, size: int) -> None:
        """Log the packet just stamped; an away session past its bound ends."""
        if session.log.add(item, size):
            self.over(session)

    def over(self, session: ResumableSession) -> None:
        """An away session's log passed its bound: it ends, once the send under way has returned."""
        if not session.ended:
            self.clock.callLater(0, self._expire, session, BUFFER_FULL)


    # -- away and back -------------------------------------------------------

    def went_away(self, session: ResumableSession, reason: str) -> None:
        """Its transport was lost: wait ``window`` seconds for it."""
        if session.ended or session.parked or session.away_reason is not None:
            return
        session.away_reason = reason
        session.log.hold(True)
        self._away.add(session)
        session.timer = self._windows.call_later(partial(self._expire, session, WINDOW_PASSED))
        self.log.info(
            "{sid} away ({reason}): resumable for {window:g}s", sid=session.connection.id, reason=reason, window=self.window
        )

    def find(self, pid: str, namespace: str, offset: object) -> Any:
        """The session a CONNECT with ``pid`` may take back (or a Deferred firing with it), or None."""
        if not isinstance(pid, str) or parse_offset(offset) is None:
            return None
        found = maybeDeferred(self.store.get, pid)
        return found.addCallback(self._usable, namespace, offset)

    def _usable(self, session: Optional[ResumableSession], namespace: str, offset: object) -> Optional[ResumableSession]:
        if session is None or session.ended or session.parked or session.connection.namespace != namespace:
            return None
        if self.missed(session, offset) is None:
            return None
        return session

    def missed(self, session: ResumableSession, offset: object) -> Optional[list[Item]]:
        """What the client missed after ``offset``, or None when that cannot be told."""
        number = parse_offset(offset)
        return None if number is None else session.log.after(number)

    def back(self, session: ResumableSession) -> None:
        """It was taken back: no longer away."""
        self._cancel_timer(session)
        if session.away_reason is not None:
            session.away_reason = None
            session.log.hold(False)
            self._away.discard(session)

    @staticmethod
    def _cancel_timer(session: ResumableSession) -> None:
        timer, session.timer = session.timer, None
        cancel(timer)

    def outcome(self, outcome: str) -> None:
        try:
            self.on_outcome(outcome)
        except Exception:
            self.log.failure("counting a resume outcome failed")

    # -- across processes (a cluster) ----------------------------------------

    @property
    def can_park(self) -> bool:
        return self.park is not None and self.enabled and self.park.available

    def forward(self, session: ResumableSession, head: bytes, body: bytes) -> int:
        """A message for a session parked or handed to another process."""
        assert self.park is not None
        self.park.append(session.pid, session.connection.id, head, body)
        return len(head) + len(body) + 2

    def _requested(self, pid: str, asker: str, remote: str, auth: dict[str, Any]) -> bool:
        """Another process's client presented ``pid``: park it if it is ours
        and its application admits the client as for a resume here (raises
        ConnectRefused if not: the session stays as it was).

        A session still live here (its old transport not known lost yet)
        loses that transport: the newest connection wins.
        """
        session = self.store.get(pid)
        if not isinstance(session, ResumableSession) or session.ended or session.parked:
            return False
        connection = session.connection
        connection.application.resume(connection, remote, auth)
        connection.release_transport()
        self.hand_over(session, asker)
        return True

    def hand_over(self, session: ResumableSession, asker: str = "") -> Deferred:
        """Park ``session`` for another process to take; fires when done."""
        assert self.park is not None
        connection = session.connection
        try:
            state = connection.application.export(connection)
        except Exception:
            self.log.failure("exporting {sid} failed", sid=connection.id)
            return succeed(None)
        session.parked = True
        self._cancel_timer(session)
        first, kept = session.log.kept()
        items = [item for item in kept if isinstance(item, bytes)]
        if len(items) != len(kept):  # binary attachments cannot be parked: start after them
            first, items = session.log.last + 1, []
        parked = ParkedSession(session.pid, connection.id, connection.namespace, state, first, session.log.last)
        done = self.park.park(parked, items, asker)
        return done.addCallbacks(self._handed, self._not_handed, (session,), None, (session,))

    def _handed(self, _: object, session: ResumableSession) -> None:
        connection = session.connection
        self._away.discard(session)
        session.away_reason = None
        session.ended = True
        self.store.remove(session)
        self.log.info("{sid} parked: another process may take its session over", sid=connection.id)
        try:
            connection.application.handed_off(connection)
        except Exception:
            self.log.failure("application handed_off failed")
        self.clock.callLater(self.window, self._forget, connection)

    def _forget(self, connection: Any) -> None:
        try:
            connection.application.forget(connection)
        except Exception:
            self.log.failure("application forget failed")

    def _not_handed(self, failure: Any, session: ResumableSession) -> None:
        self.log.warn("parking {sid} failed: {why}", sid=session.connection.id, why=failure.getErrorMessage())
        session.parked = False
        if self._draining:
            self._finish(session, "server shutdown")
        elif session.away_reason is not None and session.timer is None:
            session.timer = self._windows.call_later(partial(self._expire, session, WINDOW_PASSED))

    def park_all(self) -> Deferred:
        """This process drains: park every session it holds, live or away."""
        self._draining = True
        return DeferredList([self.hand_over(session) for session in self.store if not session.ended])

    def take_over(self, pid: object, namespace: str, offset: object, remote: str, auth: dict[str, Any]) -> Deferred:
        """The parked session a client (at ``remote``, with ``auth``) asks for
        on this process, asking the process that holds it to park it first
        (that process admits the client, or the Deferred fails with its
        ConnectRefused): ``{"sid", "ns", "state"}``, or None."""
        park = self.park
        if park is None or not self.can_park or not isinstance(pid, str) or parse_offset(offset) is None:
            return succeed(None)

        def asked(found: Optional[dict[str, Any]]) -> Any:
            if found is not None:
                return found
            return park.ask(pid, remote, auth).addCallback(lambda parked: park.peek(pid) if parked else None)

        found = park.peek(pid).addCallback(asked)
        return found.addCallback(lambda found: found if found is not None and found["ns"] == namespace else None)

    def claim(self, pid: str, offset: object, namespace: str) -> Deferred:
        """Take the parked session over: ``{"sid", "state", "last", "missed"}`` or None."""
        assert self.park is not None
        number = parse_offset(offset)
        if number is None:
            return succeed(None)
        return self.park.claim(pid, number, namespace)

    def adopted(self, pid: str, connection: Any, last: int, missed: list[bytes]) -> ResumableSession:
        """The session of a connection taken over from another process, kept
        here with the packets its client missed (offsets up to ``last``)."""
        session = ResumableSession(pid, connection, self.buffer_bytes)
        log = session.log
        log.last = log.first = last - len(missed) + 1
        log.last -= 1
        for item in missed:
            log.last += 1
            log.add(item, item_size(item))
        self.keep(session)
        return session

    # -- the end -------------------------------------------------------------

    def end(self, session: ResumableSession) -> None:
        """It ended for good (disconnect, kick): forget it now."""
        if session.ended:
            return
        self.back(session)
        session.ended = True
        self.store.remove(session)

    def shutdown(self, reason: str) -> None:
        """This process stops: the sessions away end now (their rooms are told)."""
        for session in list(self._away):
            self._finish(session, reason)

    def _expire(self, session: ResumableSession, why: str) -> None:
        if session.ended or session.away_reason is None:
            return
        session.timer = None
        self.outcome(EXPIRED)
        self._finish(session, why)

    def _finish(self, session: ResumableSession, why: str) -> None:
        self.end(session)
        connection = session.connection
        self.log.info("{sid} not resumed ({why}): it leaves its rooms", sid=connection.id, why=why)
        try:
            connection.application.disconnect(connection, why)
        except Exception:
            self.log.failure("application disconnect failed")


def disabled_recovery(ids: SessionIds, clock: IReactorTime) -> Recovery:
    """Recovery turned off (no connection may opt in)."""
    return Recovery(InMemorySessionStore(), clock, 0.0, 0, ids, lambda outcome: None)
