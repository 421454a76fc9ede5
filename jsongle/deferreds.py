"""The result of a Deferred that has already fired, taken without its callback machinery.

The room registry answers with Deferreds (a Redis registry needs them); the
in-memory one answers with Deferreds that have already fired. Adding a
callback to one runs Twisted's callback loop at once, a good part of what a
join or a leave cost. A caller that can go on either way takes the value
directly when there is one, and adds its callbacks otherwise.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: What :func:`result_now` gives for a Deferred that has no value yet (or failed).
PENDING: Any = object()


def result_now(deferred: Deferred) -> Any:
    """The value ``deferred`` fired with, or :data:`PENDING` when it has not
    fired, has callbacks still to run, waits on another Deferred, or failed
    (a failure is left to its errbacks, so it is never lost)."""
    if deferred.called and not deferred.paused:
        # Twisted keeps the callbacks still to run here (``callbacks``, its old
        # name, is deprecated); a Twisted without it gets the usual way.
        waiting = getattr(deferred, "_callbacks", None)
        if waiting is not None and not waiting:
            result = deferred.result
            if not isinstance(result, (Failure, Deferred)):
                return result
    return PENDING


__all__ = ["PENDING", "result_now"]
