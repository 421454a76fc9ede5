"""A connected client as JSONgle sees it: an id and, after hello, an identity."""

from __future__ import annotations

from typing import Any, Callable, Optional

from jsongle.signaling.ratelimit import FloodGuard
from jsongle.signaling.rooms import RoomMember


class Member:
    """Per-connection JSONgle state; sends through a callable, not a transport."""

    __slots__ = ("connection_id", "uid", "dn", "connected_at", "hello_transaction", "deliver", "flood", "_ref")

    def __init__(self, connection_id: str, deliver: Callable[[dict[str, Any]], None], connected_at: float) -> None:
        self.connection_id = connection_id
        self.deliver = deliver
        self.connected_at = connected_at
        self.uid: Optional[str] = None
        self.dn: Optional[str] = None
        self.hello_transaction: Optional[str] = None
        #: The incoming-message budget (None when rate limits are off).
        self.flood: Optional[FloodGuard] = None
        self._ref: Optional[RoomMember] = None

    @property
    def registered(self) -> bool:
        return self.uid is not None

    def register(self, uid: str, dn: Optional[str]) -> None:
        self.uid = uid
        self.dn = dn
        identity: dict[str, Any] = {"uid": uid}
        if dn is not None:
            identity["dn"] = dn
        self._ref = RoomMember(self.connection_id, uid, identity)

    @property
    def identity(self) -> dict[str, Any]:
        assert self._ref is not None
        return self._ref.identity

    @property
    def ref(self) -> RoomMember:
        assert self._ref is not None
        return self._ref
