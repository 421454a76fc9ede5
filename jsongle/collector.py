"""The garbage collector, set for a server of many small long-lived sessions.

CPython runs a young-generation collection every 700 net allocations of
container objects, and a full one, walking every object, whenever the
long-lived ones have grown by a quarter. A signaling server allocates a few
hundred such objects per connection and keeps each session (and, with
resume, each away session) for minutes: with the defaults, connection
churn with resume spent 11-12 % of its CPU in the collector, the full
collections walking the tens of thousands of objects start-up had built
and that live as long as the process.

So, once the reactor runs: what start-up built is frozen (full collections
skip it; it is still freed by reference counting, as everything is), and
young collections run every 10,000 net allocations instead of 700. The
collector's share of that churn halved (about 5 %); garbage cycles wait a
little longer for their collection, a few hundred kilobytes at most.
"""

from __future__ import annotations

import gc

#: Net container allocations between two young-generation collections.
YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Freeze what exists now and space out young collections (call once started)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
