"""Dates as JavaScript's ``Date.toJSON()`` writes them, made cheaply.

Messages are stamped and log lines dated many times a second, so the text of
the current second and of the last few milliseconds is cached.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Optional


@lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))


@lru_cache(maxsize=16)
def _millisecond(millis: int) -> str:
    whole, part = divmod(millis, 1000)
    return _second(whole) + "%03dZ" % part


def iso_date(seconds: float) -> str:
    """``2026-11-24T10:00:00.000Z``: what JavaScript's Date.toJSON() gives.

    Every relayed message is stamped, many within the same millisecond: the
    text of the last few milliseconds is cached, and the very last one is
    found by comparing the time itself.
    """
    last_seconds, last_text = _last[0]
    if seconds == last_seconds:
        return last_text
    text = _millisecond(round(seconds * 1_000_000) // 1000)
    _last[0] = (seconds, text)  # one assignment: a reader sees a pair that belongs together
    return text


#: The last time asked for, with its text.
_last: list[tuple[Optional[float], str]] = [(None, "")]
