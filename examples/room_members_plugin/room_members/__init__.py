"""The 'room-members' query: who is in a room I am in?"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from jsongle.interfaces import IQueryHandler
from jsongle.signaling.errors import BAD_PARAMETERS, NOT_A_MEMBER, JsongleError

__all__ = ["RoomMembersHandler"]


@implementer(IPlugin, IQueryHandler)
class RoomMembersHandler:
    """Answers ``iq-set`` ``room-members`` ``{rid}`` with every member of the room.

    Only members may look: anyone else gets ``iq-error`` 404002, exactly as
    if the room did not exist, so room names cannot be probed.
    """

    query = "room-members"
    action = "iq-set"

    def handle(self, request: Any) -> dict[str, Any]:
        description = request.jsongle.get("description")
        rid = description.get("rid") if isinstance(description, dict) else None
        if not isinstance(rid, str) or not rid:
            raise JsongleError(BAD_PARAMETERS, "Missing 'rid' parameter")
        room = request.rooms.room(rid)
        if room is None or all(m.connection_id != request.member.connection_id for m in room.members):
            raise JsongleError(NOT_A_MEMBER, f"Not member of room {rid}")
        return {"rid": rid, "members": [m.identity for m in room.members]}
