"""Rate limits: a token bucket per connection, and failed CONNECTs per address.

Both read time from the injected clock's ``seconds()`` (given as ``now``), keep
a few numbers each and start no timer, so nothing outlives the connection or
needs cancelling.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class RatePolicy(NamedTuple):
    """Config ``rateLimitPerSecond``, ``rateLimitBurst``, ``rateLimitDisconnect``."""

    per_second: int = 50
    burst: int = 200
    disconnect_after: int = 100
    #: Seconds during which one 429001 is sent and excess messages are counted.
    window: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


class Verdict(enum.Enum):
    ACCEPT = "accept"
    #: Over the limit: drop it, and warn the sender (the first of a window).
    WARN = "warn"
    #: Over the limit again in this window: drop it silently.
    DROP = "drop"
    #: Over the hard limit: close the connection.
    CLOSE = "close"


class FloodGuard:
    """One connection's incoming message budget."""

    __slots__ = ("policy", "_tokens", "_stamp", "_window_start", "_over")

    def __init__(self, policy: RatePolicy, now: float) -> None:
        self.policy = policy
        self._tokens = float(policy.burst)
        self._stamp = now
        self._window_start: float | None = None
        self._over = 0

    def admit(self, now: float) -> Verdict:
        """Spend a token for one message, or say what to do with it."""
        policy = self.policy
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(policy.burst), self._tokens + elapsed * policy.per_second)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.ACCEPT
        start = self._window_start
        if start is None or now - start >= policy.window:
            self._window_start = now
            self._over = 1
            return Verdict.WARN
        self._over += 1
        if policy.disconnect_after and self._over > policy.disconnect_after:
            return Verdict.CLOSE
        return Verdict.DROP


class FailedAttempts:
    """Failed CONNECTs per remote address, in fixed windows (config ``connectFailuresPerIp``)."""

    #: Above this many addresses, expired ones are dropped on the next failure.
    PRUNE_ABOVE = 1024

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, tuple[float, int]] = {}

    def blocked(self, address: str, now: float) -> bool:
        """True when ``address`` used up its failures in the current window."""
        if not self.limit:
            return False
        entry = self._failures.get(address)
        return entry is not None and now - entry[0] < self.window and entry[1] >= self.limit

    def failed(self, address: str, now: float) -> None:
        """Count one refused CONNECT from ``address``."""
        if not self.limit:
            return
        entry = self._failures.get(address)
        if entry is None or now - entry[0] >= self.window:
            if len(self._failures) >= self.PRUNE_ABOVE:
                self._prune(now)
            self._failures[address] = (now, 1)
        else:
            self._failures[address] = (entry[0], entry[1] + 1)

    def _prune(self, now: float) -> None:
        expired = [a for a, (start, _) in self._failures.items() if now - start >= self.window]
        for address in expired:
            del self._failures[address]

    def __len__(self) -> int:
        return len(self._failures)
