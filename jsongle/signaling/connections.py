"""The connections this process holds, by id, and the bytes sent to them."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import orjson

from jsongle.interfaces import IConnection
from jsongle.metrics import Metrics


class LocalConnections:
    """Connections of this process; every send through here counts its bytes
    (``sent_total``)."""

    __slots__ = ("_connections", "_addressed", "_metrics", "_retired")

    def __init__(self, metrics: Metrics) -> None:
        self._connections: dict[str, IConnection] = {}
        #: Each connection with the JSON start of a message to it, ``{"to":<its id>,``,
        #: encoded once: a relayed body is encoded once and prefixed per recipient.
        self._addressed: dict[str, tuple[IConnection, bytes]] = {}
        self._metrics = metrics
        #: Connections whose session went to another process: not counted,
        #: but what still reaches them here is sent on (it follows them).
        self._retired: dict[str, IConnection] = {}

    def add(self, connection: IConnection) -> None:
        self._connections[connection.id] = connection
        self._addressed[connection.id] = (connection, b'{"to":' + orjson.dumps(connection.id) + b",")

    def remove(self, connection_id: str) -> bool:
        """Forget a connection; False when it was not here (already gone)."""
        self._addressed.pop(connection_id, None)
        return self._connections.pop(connection_id, None) is not None

    def retire(self, connection_id: str) -> bool:
        """A connection's session went elsewhere; False when it was not here."""
        connection = self._connections.pop(connection_id, None)
        self._addressed.pop(connection_id, None)
        if connection is None:
            return False
        self._retired[connection_id] = connection
        return True

    def forget(self, connection_id: str) -> None:
        """Stop sending on for a retired connection."""
        self._retired.pop(connection_id, None)

    def get(self, connection_id: str) -> Optional[IConnection]:
        return self._connections.get(connection_id)

    def addressed(self, connection_id: str) -> Optional[tuple[IConnection, bytes]]:
        """The connection and the encoded start of a message to it, or None when not here."""
        return self._addressed.get(connection_id)

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[IConnection]:
        return iter(list(self._connections.values()))

    def send(self, connection_id: str, message: Any) -> bool:
        """Deliver to a connection of this process; False when it is not here."""
        connection = self._connections.get(connection_id)
        if connection is None:
            connection = self._retired.get(connection_id)
            if connection is None:
                return False
        self._metrics.sent_bytes += connection.send(message)
        return True

    def send_on(self, connection: IConnection, message: Any) -> None:
        """Deliver on a connection in hand (answers to a sender)."""
        self._metrics.sent_bytes += connection.send(message)

    def on_transport(self, transport: str) -> int:
        """Connections carried by ``transport`` now (read at scrape time)."""
        return sum(1 for connection in self._connections.values() if connection.transport == transport)
