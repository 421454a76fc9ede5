"""The rules of rooms, in one place: kinds, caps, and the errors that say so.

Both room registries decide with these codes and answer with these texts:
the in-memory one directly, the Redis one from the codes its Lua scripts
(written with the same constants) return.
"""

from __future__ import annotations

from typing import NamedTuple

from jsongle.signaling import errors
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.messages import MUC, ROOM

KINDS = (ROOM, MUC)


class RoomCaps(NamedTuple):
    """Config ``maxMembersPerRoom``, ``maxMembersPerMultiRoom``, ``maxMultiRoomPerUser``."""

    max_members_per_room: int = 2
    max_members_per_multi_room: int = 10
    max_multi_room_per_user: int = 10

    def seats(self, kind: str) -> int:
        """How many members a room of ``kind`` holds."""
        return self.max_members_per_multi_room if kind == MUC else self.max_members_per_room


def full(kind: str) -> JsongleError:
    """403001: the room has no seat left."""
    label = "multi room" if kind == MUC else "room"
    return JsongleError(errors.FULL, f"Max number of members per {label} already reached")


def too_many_rooms() -> JsongleError:
    """403003: the user is in ``maxMultiRoomPerUser`` MUC rooms already."""
    return JsongleError(errors.TOO_MANY_ROOMS, "Max number of multi rooms per user already reached")


def wrong_kind(rid: str, kind: str) -> JsongleError:
    """400001: the room exists with the other kind (a room keeps the kind it was joined with)."""
    return JsongleError(errors.BAD_PARAMETERS, f"Room {rid} is not a {'multiroom' if kind == MUC else 'room'}")


def not_a_member(rid: str, kind: str) -> JsongleError:
    """404002 on leave: not in that room (``kind`` of the room when it exists)."""
    return JsongleError(errors.NOT_A_MEMBER, f"Not member of {'multiroom' if kind == MUC else 'room'} {rid}")


def join_refusal(code: int, rid: str, kind: str) -> JsongleError:
    """The error of a join refused with ``code`` (what the Lua join returns)."""
    if code == errors.TOO_MANY_ROOMS:
        return too_many_rooms()
    if code == errors.FULL:
        return full(kind)
    return wrong_kind(rid, kind)
