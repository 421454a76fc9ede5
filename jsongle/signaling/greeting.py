"""The session-hello the server sends a new connection."""

from __future__ import annotations

from typing import Any, Optional

from jsongle import DESCRIPTION, __version__
from jsongle.signaling.member import Member
from jsongle.signaling.messages import IQ_GET, Messages
from jsongle.signaling.turn import IceServers

HELLO = "session-hello"


class Greeting:
    """Builds the ``iq-get session-hello`` (what the server is, when the client connected)."""

    __slots__ = ("_messages", "_ice_servers")

    def __init__(self, messages: Messages, ice_servers: Optional[IceServers] = None) -> None:
        self._messages = messages
        #: With TURN configured, the hello hands out credentials named after the connection.
        self._ice_servers = ice_servers

    def description(self, member: Member) -> dict[str, Any]:
        messages = self._messages
        description = {
            "version": __version__,
            "sn": messages.server_id,
            "info": DESCRIPTION,
            "connected": messages.date(member.connected_at),
        }
        ice = self._ice_servers
        if ice is not None and ice.turn:
            description["iceServers"] = ice.ice_servers(member.connection_id, member.connected_at)
        return description

    def hello(self, member: Member) -> dict[str, Any]:
        """The query; its transaction is remembered on ``member``."""
        messages = self._messages
        member.hello_transaction = messages.new_id()
        return messages.iq(member.connection_id, IQ_GET, member.hello_transaction, HELLO, self.description(member))
