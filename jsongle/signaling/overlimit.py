"""What happens to a message over the sender's rate limit."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from jsongle.metrics import Metrics
from jsongle.signaling import errors
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.member import Member
from jsongle.signaling.messages import Messages, reply_address
from jsongle.signaling.ratelimit import Verdict

TOO_MANY_MESSAGES_DETAILS = "Too many messages"


class OverLimit:
    """Drops a message over the limit; warns once a window (429001), kicks past the hard limit."""

    log = Logger()

    __slots__ = ("_messages", "_local", "_metrics")

    def __init__(self, messages: Messages, local: LocalConnections, metrics: Metrics) -> None:
        self._messages = messages
        self._local = local
        self._metrics = metrics

    def handle(self, member: Member, message: Any, verdict: Verdict) -> None:
        self._metrics.rate_limited(verdict.value).inc()
        if verdict is Verdict.WARN:
            self.log.info("{sid} is over the rate limit", sid=member.connection_id)
            answer = self._messages.session_error(
                reply_address(message, member.connection_id), errors.TOO_MANY_MESSAGES, TOO_MANY_MESSAGES_DETAILS
            )
            self._local.send_on(member.connection, answer)
        elif verdict is Verdict.CLOSE:
            connection = member.connection
            self.log.warn(
                "disconnecting {sid} from {remote}: flooding past the hard rate limit", sid=member.connection_id, remote=connection.remote
            )
            connection.close()
