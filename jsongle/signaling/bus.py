"""The message bus of a process alone: every connection is local."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from jsongle.interfaces import IMessageBus


@implementer(IMessageBus)
class LocalBus:
    """No other node: nothing to carry (members of a room are all here)."""

    node_id = ""

    def send(self, node: str, connection_id: str, message: dict[str, Any]) -> None:
        """Never called: a member of another node exists only in a cluster."""
