"""How much waits to be sent to a client that does not read (``maxBufferedBytes``).

A TCP transport buffers whatever we write; a client that stops reading would
make that buffer, and our memory, grow without end.  Twisted tells a
registered streaming producer when its buffer is full (``pauseProducing``)
and when it has drained (``resumeProducing``): :class:`OutgoingBudget` counts
the bytes written in between, and calls ``on_exceeded`` once past the limit.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class OutgoingBudget:
    """The producer side of one connection: it never produces, it only counts."""

    __slots__ = ("limit", "paused", "waiting", "_on_exceeded", "_exceeded")

    def __init__(self, limit: int, on_exceeded: Callable[[], None]) -> None:
        self.limit = limit
        self.paused = False
        #: Bytes written since the transport said its buffer was full.
        self.waiting = 0
        self._on_exceeded = on_exceeded
        self._exceeded = False

    def sent(self, size: int) -> None:
        """Count ``size`` bytes just handed to the transport."""
        if not self.paused or self._exceeded:
            return
        self.waiting += size
        if self.waiting > self.limit:
            self._exceeded = True
            self._on_exceeded()

    # -- IPushProducer (called by the transport) ------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.waiting = 0

    def stopProducing(self) -> None:
        self.paused = False
        self.waiting = 0


def watch_transport(transport: Any, limit: int, on_exceeded: Callable[[], None]) -> OutgoingBudget:
    """Register an :class:`OutgoingBudget` as ``transport``'s producer.

    A WebSocket taken over from twisted.web gets its connection without a
    producer: the hand-over unregisters the HTTP channel.
    """
    budget = OutgoingBudget(limit, on_exceeded)
    transport.registerProducer(budget, True)
    return budget
