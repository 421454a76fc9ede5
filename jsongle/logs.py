"""Log levels for the console, changeable at runtime; masking for all.

twistd installs its own observer; we put a level filter in front of it so
debug events are dropped before they are formatted.  Under twistd the filter
is in place before twistd's first line (its banner), through the observer
factory of its ``--logger`` option (see :meth:`ConsoleLevel.wrap`).  Every event is masked
once (see :mod:`jsongle.logfile`) before it reaches the console filter or
any other observer given to :meth:`ConsoleLevel.install` (the log file).
"""

from __future__ import annotations

from typing import Iterable

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogPublisher,
    PredicateResult,
    globalLogPublisher,
)
from zope.interface import implementer

from jsongle.logfile import MaskingObserver

LEVELS = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "fatal": LogLevel.critical,
    "critical": LogLevel.critical,
}


def parse_level(name: str) -> LogLevel:
    """A LogLevel from a JSONgle level name; KeyError when unknown."""
    return LEVELS[name.lower()]


@implementer(ILogFilterPredicate)
class AtLeast:
    """Passes events of ``level`` and above, whatever their namespace.

    What ``LogLevelFilterPredicate`` decides with one level for all
    namespaces, without its per-event walk up the namespace.
    """

    __slots__ = ("level",)

    def __init__(self, level: LogLevel) -> None:
        self.level = level

    def __call__(self, event: LogEvent) -> PredicateResult:
        level = event.get("log_level")
        if level is None or not event.get("log_namespace"):
            return PredicateResult.no
        # ``announce=True`` (the start-up note of jsongle.welcome) shows at any level.
        if level < self.level and not event.get("announce"):
            return PredicateResult.no
        return PredicateResult.maybe


class ConsoleLevel:
    """Filters what reaches the observers already on the global publisher."""

    def __init__(
        self, level: str, publisher: LogPublisher = globalLogPublisher, secrets: Iterable[str] = ()
    ) -> None:
        self.name = level
        self.predicate = AtLeast(parse_level(level))
        self.secrets = tuple(s for s in secrets if s)
        self._publisher = publisher
        self._filtered: list[ILogObserver] = []
        self._filter: ILogObserver | None = None
        self._wrapped = False

    def wrap(self, console: ILogObserver, also: Iterable[ILogObserver] = ()) -> ILogObserver:
        """The observer for twistd to install: ``console`` behind the level
        filter, ``also`` (the log file) getting every event, all masked.

        Once it is in place, :meth:`install` and :meth:`uninstall` have
        nothing to do: twistd adds and removes it.
        """
        self._wrapped = True
        return MaskingObserver(LogPublisher(FilteringLogObserver(console, [self.predicate]), *also), self.secrets)

    def install(self, also: Iterable[ILogObserver] = ()) -> None:
        """Move the publisher's current observers behind the level filter.

        Events are masked first; ``also`` (e.g. the log file) gets every
        masked event, whatever the console level.
        """
        if self._wrapped:
            return
        existing = list(self._publisher._observers)
        for observer in existing:
            self._publisher.removeObserver(observer)
        self._filtered = existing
        console = FilteringLogObserver(LogPublisher(*existing), [self.predicate])
        self._filter = MaskingObserver(LogPublisher(console, *also), self.secrets)
        self._publisher.addObserver(self._filter)

    def uninstall(self) -> None:
        if self._filter is not None:
            self._publisher.removeObserver(self._filter)
            for observer in self._filtered:
                self._publisher.addObserver(observer)
            self._filter = None

    def set(self, level: str) -> str:
        """Change the level; returns the previous name."""
        self.predicate.level = parse_level(level)
        previous, self.name = self.name, level.lower()
        return previous
