"""Many timers of one fixed delay on one reactor timer.

Every Engine.IO session waits ``pingInterval`` before its next ping and
``pingTimeout`` for the answer. A reactor timer (``IDelayedCall``) for each
costs most of a kilobyte (the call, its dict, three bound methods) and a
place in the reactor's heap, and a cancelled one stays there until the
reactor sweeps: with thousands of idle sessions, the heartbeat alone held
more memory than the session. When every timer of a kind has the same
delay, they fall due in the order they were set: a queue in that order and
one reactor timer for the earliest one do the same work, exactly on time.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: A timer set by :meth:`FixedDelayTimers.call_later`: ``[due, action, its
#: FixedDelayTimers]``; ``action`` is None once run or cancelled.
Timer = list

#: Timers due this close to the reactor timer's time run with it (the
#: reactor adds the delay to its own idea of now; the sum may round).
_SLACK = 1e-6


class FixedDelayTimers:
    """Calls each action ``delay`` seconds after it was given, in order."""

    __slots__ = ("clock", "delay", "_queue", "_call", "_running", "_live")

    log = Logger()

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self.clock = clock
        self.delay = delay
        self._queue: deque[Timer] = deque()
        self._call: Optional[IDelayedCall] = None
        self._running = False
        #: Timers in the queue neither run nor cancelled: at 0, no reactor timer is left.
        self._live = 0

    def call_later(self, action: Callable[[], Any]) -> Timer:
        """Call ``action`` in ``delay`` seconds; :func:`cancel` the result to stop it."""
        timer = [self.clock.seconds() + self.delay, action, self]
        self._queue.append(timer)
        self._live += 1
        if self._call is None and not self._running:
            self._call = self.clock.callLater(self.delay, self._run)
        return timer

    def _run(self) -> None:
        self._call = None
        self._running = True
        queue = self._queue
        try:
            while queue:
                timer = queue[0]
                if timer[1] is not None and timer[0] > self.clock.seconds() + _SLACK:
                    break
                queue.popleft()
                action, timer[1] = timer[1], None
                if action is not None:
                    self._live -= 1
                    try:
                        action()
                    except Exception:
                        self.log.failure("timer action failed")
        finally:
            self._running = False
        if queue:
            self._call = self.clock.callLater(max(0.0, queue[0][0] - self.clock.seconds()), self._run)

    def _cancelled(self) -> None:
        self._live -= 1
        if not self._live:
            # Nothing left to run: no reactor timer either.
            self._queue.clear()
            call, self._call = self._call, None
            if call is not None and call.active():
                call.cancel()

    def __len__(self) -> int:
        """Timers set and not yet run nor cancelled."""
        return self._live


def cancel(timer: Optional[Timer]) -> None:
    """Stop a timer before it runs (nothing happens when it has run)."""
    if timer is not None and timer[1] is not None:
        timer[1] = None
        timer[2]._cancelled()


def active(timer: Optional[Timer]) -> bool:
    """True while a timer is set and has neither run nor been cancelled."""
    return timer is not None and timer[1] is not None


__all__ = ["FixedDelayTimers", "Timer", "active", "cancel"]
