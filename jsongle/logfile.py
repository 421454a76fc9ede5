"""The debug log file: masked events, one JSON object a line, rotated.

Personal data (display names, message contents) and secrets (tokens) are
masked once per event by :class:`MaskingObserver`, in front of both the file
and the console, so no observer ever sees them in clear.

:class:`LogFile` buffers writes and flushes them on a short timer of the
injected clock; it rotates every ``period`` seconds, keeping ``keep`` old
files (``path.1`` is the newest).  It only ever renames or deletes regular
files: a ``logPath`` of ``/dev/null``, a FIFO or any other device is written
to and left exactly as it is.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Callable, Iterable, Optional

import orjson
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

from jsongle.dates import iso_date

MASK = "***"

#: Keys whose values are personal data or credentials, wherever they appear in an event.
MASKED_KEYS = frozenset({"dn", "content", "additionalContent", "token", "credential"})

# ``"dn": "Alice"``, ``'content': 'hi'``, ``dn='Alice'`` in already formatted text.
_QUOTED_VALUE = re.compile(
    r"""(?P<key>["']?\b(?:dn|content|additionalContent)\b["']?\s*[:=]\s*)"""
    r"""(?P<quote>["'])(?:\\.|(?!(?P=quote)).)*(?P=quote)""",
    re.DOTALL,
)


# A signed JWT (per-user token): its header is base64url of '{"', so it starts "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask quoted personal values, tokens, and every secret in ``text``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "dn" in text or "ontent" in text:
        text = _QUOTED_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{MASK}{m.group('quote')}", text)
    return text


def mask_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with personal keys masked in every nested dict."""
    if isinstance(value, dict):
        return {
            key: (MASK if key in MASKED_KEYS and value[key] is not None else mask_value(value[key], secrets))
            for key in value
        }
    if isinstance(value, (list, tuple)):
        return [mask_value(item, secrets) for item in value]
    if isinstance(value, str):
        return mask_text(value, secrets)
    return value


#: The masked, formatted text of an event, kept so that it is formatted once.
MASKED_TEXT = "jsongle_masked_text"


def format_event(event: LogEvent) -> str:
    """``twisted.logger.formatEvent``, with ``str.format_map`` tried first.

    Twisted formats with ``string.Formatter``, in Python; the built-in
    method does the same for every format but Twisted's ``{call()}`` syntax
    and legacy events, which go to Twisted (and so does any error, which
    Twisted turns into its "unable to format" text).
    """
    format = event.get("log_format")
    if format is None:
        return ""
    if type(format) is str and "log_flattened" not in event:
        try:
            return format.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def mask_event(event: LogEvent, secrets: Iterable[str] = ()) -> LogEvent:
    """A copy of ``event`` whose fields and formatted text are masked.

    The masked text becomes the event's ``log_format`` (braces escaped), so
    every downstream observer prints the masked text whatever it formats.
    """
    secrets = tuple(s for s in secrets if s)
    masked: dict[str, Any] = {}
    for key, value in event.items():
        if key.startswith("log_"):
            masked[key] = value
        elif key in MASKED_KEYS and value is not None:
            masked[key] = MASK
        else:
            masked[key] = mask_value(value, secrets)
    if masked.get("log_format") is not None:
        text = mask_text(format_event(masked), secrets)
        masked["log_format"] = text.replace("{", "{{").replace("}", "}}")
        masked[MASKED_TEXT] = text
    return masked


@implementer(ILogObserver)
class MaskingObserver:
    """Masks each event once, then hands it to ``observer``."""

    def __init__(self, observer: ILogObserver, secrets: Iterable[str] = ()) -> None:
        self.observer = observer
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, event: LogEvent) -> None:
        self.observer(mask_event(event, self.secrets))


def event_line(event: LogEvent) -> str:
    """One compact JSON object: time, level, namespace, text (and traceback)."""
    when = event.get("log_time")
    level = event.get("log_level")
    text = event.get(MASKED_TEXT)
    record: dict[str, Any] = {
        "time": iso_date(when) if when is not None else None,
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "text": text if text is not None else format_event(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    try:
        return orjson.dumps(record, default=repr, option=orjson.OPT_APPEND_NEWLINE).decode("utf-8")
    except orjson.JSONEncodeError:  # text no UTF-8 can hold (lone surrogates): escaped
        return json.dumps(record, default=repr) + "\n"


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class LogFile:
    """A buffered, rotated log file driven by an injected clock."""

    def __init__(
        self,
        path: str,
        period: float,
        keep: int,
        clock: IReactorTime,
        failed: Callable[..., None],
        flush_interval: float = 1.0,
    ) -> None:
        self.path = path
        #: ``failed(what, error, warn)``: a write that failed (Metrics.failed).
        self._failed = failed
        self._failing = False
        self.period = period
        self.keep = keep
        self.clock = clock
        self.flush_interval = flush_interval
        self._buffer: list[str] = []
        self._file: Optional[Any] = None
        self._timer: Optional[IDelayedCall] = None
        self._next_rotation = clock.seconds() + period
        self.closed = False

    def open(self) -> None:
        """Open (or create) the file for appending; once open, nothing to do."""
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")

    def write(self, text: str) -> None:
        if self.closed:
            return
        if self.clock.seconds() >= self._next_rotation:
            self.rotate()
        self._buffer.append(text)
        if self._timer is None:
            self._timer = self.clock.callLater(self.flush_interval, self._flush_due)

    def _flush_due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Write the buffer out now."""
        if not self._buffer:
            return
        text, self._buffer = "".join(self._buffer), []
        try:
            if self._file is None:
                self.open()
            self._file.write(text)  # type: ignore[union-attr]
            self._file.flush()  # type: ignore[union-attr]
        except OSError as error:
            # A full disk must not take the server down; it is counted each
            # time and said once until a write succeeds again.
            self._failed("log write", f"{self.path}: {error}", not self._failing)
            self._failing = True
        else:
            self._failing = False

    def rotate(self) -> None:
        """Start a new period: shift the old regular files, drop the oldest."""
        self.flush()
        now = self.clock.seconds()
        while self._next_rotation <= now:
            self._next_rotation += self.period
        if not _is_regular(self.path):
            return  # missing, a device or a pipe: nothing to rotate
        self._close_file()
        for index in range(self.keep + 1, 1000):
            old = f"{self.path}.{index}"
            if not _is_regular(old):
                break
            os.remove(old)
        for index in range(self.keep, 0, -1):
            source = self.path if index == 1 else f"{self.path}.{index - 1}"
            if _is_regular(source):
                os.replace(source, f"{self.path}.{index}")
        if self.keep == 0 and _is_regular(self.path):
            os.remove(self.path)
        self.open()

    def reopen(self) -> None:
        """Flush and reopen by name (after an external rotation, e.g. logrotate)."""
        self.flush()
        self._close_file()
        self.open()

    def close(self) -> None:
        """Flush and close; later writes are dropped."""
        self.flush()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._close_file()
        self.closed = True

    def _close_file(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()


@implementer(ILogObserver)
class FileLogObserver:
    """Writes every (already masked) event to a :class:`LogFile` as JSON."""

    def __init__(self, logfile: LogFile) -> None:
        self.logfile = logfile

    def __call__(self, event: LogEvent) -> None:
        self.logfile.write(event_line(event))


__all__ = [
    "FileLogObserver",
    "LogFile",
    "MASK",
    "MASKED_KEYS",
    "MaskingObserver",
    "event_line",
    "mask_event",
    "mask_text",
    "mask_value",
]
