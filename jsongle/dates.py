"""Dates as JavaScript's ``Date.toJSON()`` writes them, made cheaply.

Messages are stamped and log lines dated many times a second: an
:class:`IsoDates` remembers the text of the last few milliseconds. The
service builds one and passes it to what stamps dates; nothing here is
module-level state.
"""

from __future__ import annotations

import time
from typing import Optional


def iso_date(seconds: float) -> str:
    """``2026-11-24T10:00:00.000Z``: what JavaScript's Date.toJSON() gives (uncached)."""
    whole, part = divmod(round(seconds * 1_000_000) // 1000, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)) + "%03dZ" % part


class IsoDates:
    """:func:`iso_date` with the text of the current second and of the last
    few milliseconds cached; the very last one is found by comparing the time itself."""

    __slots__ = ("_seconds", "_millis", "_last_seconds", "_last_text")

    #: Cache sizes: a few seconds, a few milliseconds.
    SECONDS = 4
    MILLIS = 16

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}
        self._millis: dict[int, str] = {}
        self._last_seconds: Optional[float] = None
        self._last_text = ""

    def text(self, seconds: float) -> str:
        """The date text of ``seconds`` (pass this bound method where a
        ``date(seconds)`` callable is wanted: cheaper than calling the object)."""
        if seconds == self._last_seconds:
            return self._last_text
        millis = round(seconds * 1_000_000) // 1000
        text = self._millis.get(millis)
        if text is None:
            whole, part = divmod(millis, 1000)
            prefix = self._seconds.get(whole)
            if prefix is None:
                if len(self._seconds) >= self.SECONDS:
                    self._seconds.clear()
                prefix = self._seconds[whole] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
            if len(self._millis) >= self.MILLIS:
                self._millis.clear()
            text = self._millis[millis] = prefix + "%03dZ" % part
        self._last_seconds = seconds
        self._last_text = text
        return text
