"""twistd's log observer, built by us: behind logDefaultLevel from its first line.

twistd installs its console observer and logs its banner before any service
starts, so a level filter put in by a service comes too late (the banner and
the "listening on" lines pass at any level and miss the log file). twistd
asks the application it builds for an ``ILogObserver`` component before it
makes its own: the root service sets one on it (``setServiceParent``), made
here from twistd's usual observer behind the console level, with the log
file beside it. Only the twistd entry point uses it.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import ILogObserver

from jsongle.logfile import FileLogObserver, LogFile
from jsongle.logs import ConsoleLevel


def twistd_console(server_options: Mapping[str, Any]) -> ILogObserver:
    """The observer twistd would install for these options (stdout with
    ``--nodaemon``, else ``--logfile`` or twistd.log, or syslog)."""
    from twisted.scripts.twistd import _SomeApplicationRunner

    options = dict(server_options)
    options["logger"] = None
    observer = _SomeApplicationRunner.loggerFactory(options)._getLogObserver()
    if ILogObserver.providedBy(observer):
        return observer
    from twisted.logger import LegacyLogObserverWrapper

    return LegacyLogObserverWrapper(observer)


def observer(server_options: Mapping[str, Any], console: ConsoleLevel, logfile: LogFile) -> ILogObserver:
    """twistd's console observer behind logDefaultLevel, the log file beside it."""
    logfile.open()
    return console.wrap(twistd_console(server_options), also=[FileLogObserver(logfile)])
