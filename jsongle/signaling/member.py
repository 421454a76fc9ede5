"""A connected client as JSONgle sees it: its connection and, after hello, an identity."""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer

from jsongle.interfaces import IConnection, IMember
from jsongle.signaling.ratelimit import FloodGuard
from jsongle.signaling.rooms import RoomMember
from jsongle.signaling.tokens import Claims


@implementer(IMember)
class Member:
    """Per-connection JSONgle state."""

    __slots__ = ("connection", "connection_id", "uid", "connected_at", "hello_transaction", "flood", "claims", "_ref")

    def __init__(
        self, connection: IConnection, connected_at: float, flood: Optional[FloodGuard], claims: Optional[Claims] = None
    ) -> None:
        self.connection = connection
        self.connection_id: str = connection.id
        self.connected_at = connected_at
        self.uid: Optional[str] = None
        self.hello_transaction: Optional[str] = None
        #: The incoming-message budget (None when rate limits are off).
        self.flood = flood
        #: What the connection's per-user token says; None without per-user tokens.
        self.claims = claims
        self._ref: Optional[RoomMember] = None

    @property
    def registered(self) -> bool:
        return self.uid is not None

    def register(self, uid: str, identity: dict[str, Any]) -> None:
        self.uid = uid
        self._ref = RoomMember(self.connection_id, uid, identity)

    @property
    def identity(self) -> dict[str, Any]:
        assert self._ref is not None
        return self._ref.identity

    @property
    def ref(self) -> RoomMember:
        assert self._ref is not None
        return self._ref
