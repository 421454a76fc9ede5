"""Finding and indexing JSONgle handlers.

Only the service builder calls :func:`discover`; everything else takes an
explicit :class:`HandlerSet`, so tests can pass their own handlers.
"""

from __future__ import annotations

from typing import Iterable, Optional

from zope.interface.verify import verifyObject

from jsongle.interfaces import IActionHandler, IQueryHandler


class HandlerConflict(Exception):
    """Two plugins claim one name; the message names both."""


def describe(handler: object) -> str:
    kind = type(handler)
    return f"{kind.__module__}.{kind.__qualname__}"


class HandlerSet:
    """Query handlers by (action, query) and action handlers by action."""

    def __init__(self, queries: Iterable[object], actions: Iterable[object]) -> None:
        self.queries: dict[tuple[str, str], object] = {}
        self.actions: dict[str, object] = {}
        for handler in queries:
            verifyObject(IQueryHandler, handler)
            self._claim(self.queries, (handler.action, handler.query), handler, f"query '{handler.query}'")
        for handler in actions:
            verifyObject(IActionHandler, handler)
            self._claim(self.actions, handler.action, handler, f"action '{handler.action}'")

    @staticmethod
    def _claim(table: dict, key: object, handler: object, label: str) -> None:
        existing = table.get(key)
        if existing is not None:
            raise HandlerConflict(
                f"{label} is claimed by two handlers: {describe(existing)} and {describe(handler)}"
            )
        table[key] = handler

    def query(self, action: str, query: object) -> Optional[object]:
        if not isinstance(query, str):
            return None
        return self.queries.get((action, query))

    def action(self, action: object) -> Optional[object]:
        if not isinstance(action, str):
            return None
        return self.actions.get(action)


def discover() -> HandlerSet:
    """Every installed handler plugin (ours and third parties')."""
    from twisted.plugin import getPlugins

    import twisted.plugins

    return HandlerSet(getPlugins(IQueryHandler, twisted.plugins), getPlugins(IActionHandler, twisted.plugins))
