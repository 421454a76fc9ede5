"""Random bytes from the system's CSPRNG, fetched a few kilobytes at a time.

Every connection takes two session ids and every message the server builds
a fresh id: drawing them from a pool costs one system call per few hundred
ids instead of one each, with the same unpredictability (``os.urandom``).
"""

from __future__ import annotations

import base64
import os


class RandomPool:
    """Hands out ``os.urandom`` bytes from a refilled buffer."""

    __slots__ = ("size", "_pool", "_at")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._pool = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        """``count`` fresh random bytes (``count`` at most ``size``)."""
        at = self._at
        if at + count > len(self._pool):
            self._pool = os.urandom(self.size)
            at = 0
        self._at = at + count
        return self._pool[at : at + count]


class SessionIds:
    """Unguessable, URL-safe ids: 15 random bytes (120 bits) in 20 characters,
    as ``secrets.token_urlsafe(15)`` gives (Engine.IO session and Socket.IO socket ids)."""

    __slots__ = ("_random",)

    def __init__(self, random: RandomPool) -> None:
        self._random = random

    def new(self) -> str:
        return base64.urlsafe_b64encode(self._random.take(15)).decode("ascii")
