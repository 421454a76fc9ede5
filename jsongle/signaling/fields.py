"""Type and length checks of the identifiers a client sends.

Ids are echoed back, used as dictionary keys and shown to other members, so a
number, an object, ``null``, an empty or a megabyte-long string in one of them
must be refused with a JSONgle error (400001) before anything uses it.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

_ABSENT = object()

#: Optional envelope fields: absent is fine, present must be a short string.
ENVELOPE_IDS = ("id", "to")
#: Optional fields of ``jsongle``, same rule.
JSONGLE_IDS = ("transaction", "namespace", "sid")


class FieldLimits(NamedTuple):
    """The lengths a client may send (config ``maxIdLength``, ``maxDisplayNameLength``)."""

    max_id_length: int = 256
    max_display_name_length: int = 128


def string_problem(value: Any, limit: int) -> Optional[str]:
    """Why ``value`` is not a non-empty string of at most ``limit`` characters, or None."""
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    return None


def invalid(name: str, problem: str) -> str:
    """The errorDetails of a bad field, e.g. ``Invalid 'to' parameter: must be a string``."""
    return f"Invalid '{name}' parameter: {problem}"


def message_problem(message: Mapping[str, Any], limits: FieldLimits) -> Optional[str]:
    """errorDetails for the first bad id in a message (``jsongle`` already checked), or None."""
    limit = limits.max_id_length
    get, get_jsongle = message.get, message["jsongle"].get
    for value in (
        get("id", _ABSENT), get("to", _ABSENT),
        get_jsongle("transaction", _ABSENT), get_jsongle("namespace", _ABSENT), get_jsongle("sid", _ABSENT),
    ):
        if value is not _ABSENT and not (value.__class__ is str and 0 < len(value) <= limit):
            break
    else:
        return None  # every message a client sends: all absent or fine
    for source, names in ((message, ENVELOPE_IDS), (message["jsongle"], JSONGLE_IDS)):
        for name in names:
            value = source.get(name, _ABSENT)
            if value is _ABSENT or (value.__class__ is str and 0 < len(value) <= limit):
                continue  # absent, or what every client sends
            problem = string_problem(value, limit)
            if problem is not None:
                return invalid(name, problem)
    return None
