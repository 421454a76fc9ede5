"""The epoll reactor's poll step, lean, and the end of each poll's events.

Twisted's ``EPollReactor.doPoll`` runs every ready socket's read or write
inside ``log.callWithLogger``: a ``logPrefix()`` call, a context dict copied
and pushed, so that legacy ``log.msg`` lines name the connection. jsongle's
log lines never print that context, and with one message per read (a relay
with one message in flight per call) those calls cost as much as a tenth of
the server's CPU. :class:`PollTurns` replaces the step on the reactor
instance (never on the class) with the same loop without them, and tells
whoever asked, once the poll's events are handled, that the turn's reads are
done: the WebSocket frames those reads produced leave then, without a
``callLater(0)`` per turn.

Installed only on Twisted's epoll reactor as shipped; with any other reactor
(tests on a ``task.Clock``, another poller) nothing changes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.logger import Logger


class PollTurns:
    """Runs the reactor's poll and, after its events, what asked to follow them."""

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        #: True while the poll's events are being handled.
        self.dispatching = False
        self._after: list[Callable[[], None]] = []

    @classmethod
    def install(cls, reactor: Any) -> Optional["PollTurns"]:
        """Take over ``reactor``'s poll step when it is Twisted's epoll one."""
        try:
            from twisted.internet.epollreactor import EPollReactor
        except ImportError:  # not Linux
            return None
        step = getattr(reactor, "doIteration", None)
        if not isinstance(reactor, EPollReactor) or getattr(step, "__func__", None) is not EPollReactor.doPoll:
            return None
        turns = cls(reactor)
        reactor.doIteration = turns.poll
        return turns

    def after_events(self, call: Callable[[], None]) -> None:
        """Run ``call`` once the events of the poll under way are handled
        (only while :attr:`dispatching`)."""
        self._after.append(call)

    def poll(self, timeout: Optional[float]) -> None:
        """``EPollReactor.doPoll``, without a log context per event."""
        reactor = self._reactor
        selectables = reactor._selectables
        try:
            events = reactor._poller.poll(-1 if timeout is None else timeout, len(selectables))
        except InterruptedError:
            return
        handle = reactor._doReadOrWrite
        self.dispatching = True
        try:
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is not None:
                    try:
                        handle(selectable, fd, event)
                    except Exception:
                        self.log.failure("handling a socket event failed")
        finally:
            self.dispatching = False
            if self._after:
                after, self._after = self._after, []
                for call in after:
                    try:
                        call()
                    except Exception:
                        self.log.failure("a call after the poll's events failed")
