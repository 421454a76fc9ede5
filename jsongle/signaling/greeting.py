"""The session-hello the server sends a new connection."""

from __future__ import annotations

from typing import Any

from jsongle import DESCRIPTION, __version__
from jsongle.signaling.member import Member
from jsongle.signaling.messages import IQ_GET, Messages

HELLO = "session-hello"


class Greeting:
    """Builds the ``iq-get session-hello`` (what the server is, when the client connected)."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Messages) -> None:
        self._messages = messages

    def description(self, member: Member) -> dict[str, Any]:
        messages = self._messages
        return {
            "version": __version__,
            "sn": messages.server_id,
            "info": DESCRIPTION,
            "connected": messages.date(member.connected_at),
        }

    def hello(self, member: Member) -> dict[str, Any]:
        """The query; its transaction is remembered on ``member``."""
        messages = self._messages
        member.hello_transaction = messages.new_id()
        return messages.iq(member.connection_id, IQ_GET, member.hello_transaction, HELLO, self.description(member))
