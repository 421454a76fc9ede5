"""JSONgle error codes and the one exception handlers raise."""

from __future__ import annotations

BAD_PARAMETERS = 400001
NO_JSONGLE_DATA = 400002
FULL = 403001
NOT_REGISTERED = 403002
TOO_MANY_ROOMS = 403003
UNKNOWN_QUERY = 404001
NOT_A_MEMBER = 404002
NO_OTHER_MEMBER = 404003
ACTION_NOT_ALLOWED = 405001
#: Not in JSONgle: the sender is over the rate limit (rateLimitPerSecond).
TOO_MANY_MESSAGES = 429001
INTERNAL_ERROR = 500001
#: The hello's uid is not the sub of the connection's per-user token (PROTOCOL.md §11).
UID_MISMATCH = 403004
#: The per-user token's rooms claim does not list the room (PROTOCOL.md §11).
ROOM_NOT_ALLOWED = 403005
#: The cluster's Redis is away: joins and leaves cannot be decided now.
UNAVAILABLE = 503001


class JsongleError(Exception):
    """An error answered to the client as ``{errorCode, errorDetails}``."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details

    def describe(self) -> dict[str, object]:
        return {"errorCode": self.code, "errorDetails": self.details}
