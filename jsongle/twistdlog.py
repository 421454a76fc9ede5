"""twistd's log observer, built by us: behind logDefaultLevel from its first line.

twistd installs its console observer and logs its banner before any service
starts, so a level filter put in by a service comes too late (the banner and
the "listening on" lines pass at any level and miss the log file).  twistd's
``--logger`` option names a factory for that observer: ``Options.postOptions``
names :func:`observer`, which wraps twistd's usual observer in the console
level and adds the log file beside it.  Only the twistd entry point uses it.
"""

from __future__ import annotations

from typing import Any

#: What :func:`observer` needs: twistd's options (from ``Options.postOptions``),
#: the console level and the log file (from ``makeService``, which twistd
#: calls before it starts logging).
SETTINGS: dict[str, Any] = {}


def observer() -> Any:
    """twistd's own console observer behind logDefaultLevel, the log file beside it."""
    from twisted.scripts.twistd import _SomeApplicationRunner

    from jsongle.logfile import FileLogObserver

    settings = dict(SETTINGS.get("server_options") or {})
    settings["logger"] = None
    default = _SomeApplicationRunner.loggerFactory(settings)._getLogObserver()
    if "console" not in SETTINGS:
        return default
    logfile = SETTINGS["logfile"]
    logfile.open()
    return SETTINGS["console"].wrap(default, also=[FileLogObserver(logfile)])
