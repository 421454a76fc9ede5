"""Log levels for the console, changeable at runtime.

twistd installs its own observer; we put a level filter in front of it so
debug events are dropped before they are formatted.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
)

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


class ConsoleLevel:
    """Filters what reaches the observers already on the global publisher."""

    def __init__(self, level: str, publisher: LogPublisher = globalLogPublisher) -> None:
        self.name = level
        self.predicate = LogLevelFilterPredicate(defaultLogLevel=parse_level(level))
        self._publisher = publisher
        self._filtered: list[ILogObserver] = []
        self._filter: FilteringLogObserver | None = None

    def install(self) -> None:
        """Move the publisher's current observers behind the level filter."""
        existing = list(self._publisher._observers)
        for observer in existing:
            self._publisher.removeObserver(observer)
        self._filtered = existing
        self._filter = FilteringLogObserver(LogPublisher(*existing), [self.predicate])
        self._publisher.addObserver(self._filter)

    def uninstall(self) -> None:
        if self._filter is not None:
            self._publisher.removeObserver(self._filter)
            for observer in self._filtered:
                self._publisher.addObserver(observer)
            self._filter = None

    def set(self, level: str) -> str:
        """Change the level; returns the previous name."""
        self.predicate.setLogLevelForNamespace(None, parse_level(level))
        previous, self.name = self.name, level.lower()
        return previous
