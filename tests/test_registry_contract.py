"""One contract, both room registries: what a join, a cap, a kind, a leave
and a re-join do is the same in memory and on Redis (Lua scripts).

Each test runs against the in-memory registry and against the Redis one
(a real redis-server, started as the cluster tests do).
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from jsongle.signaling import errors
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.roomrules import RoomCaps
from jsongle.signaling.rooms import InMemoryRoomRegistry, RoomMember
from tests.test_cluster_registry import Node

CAPS = RoomCaps(max_members_per_room=2, max_members_per_multi_room=3, max_multi_room_per_user=2)


def member(cid: str, uid: str | None = None) -> RoomMember:
    uid = uid or cid
    return RoomMember(cid, uid, {"uid": uid, "dn": uid.title(), "avatar": f"/{uid}.png"})


@pytest.fixture(params=["memory", "redis"])
def registry(request):
    """A fresh registry of each kind, with CAPS."""
    if request.param == "memory":
        yield InMemoryRoomRegistry(CAPS)
        return
    redis_server = request.getfixturevalue("redis_server")
    node = Node(redis_server.port, "contract", caps=CAPS)
    pytest_twisted.blockon(node.start())
    yield node.registry
    pytest_twisted.blockon(node.stop())


@pytest_twisted.inlineCallbacks
def refused(deferred: Deferred) -> Any:
    """The JsongleError a Deferred fails with (the test fails if it succeeds)."""
    try:
        result = yield deferred
    except JsongleError as error:
        return (error.code, error.details)
    raise AssertionError(f"expected a JsongleError, got {result!r}")


def ids(members: Any) -> list[str]:
    return [m.connection_id for m in members]


@pytest_twisted.inlineCallbacks
def test_join_lists_the_others_in_join_order_and_creates_once(registry):
    first = yield registry.join("r", "room", member("a"))
    assert (ids(first.others), first.created, first.already) == ([], True, False)
    second = yield registry.join("r", "room", member("b"))
    assert (ids(second.others), second.created, second.already) == (["a"], False, False)
    assert second.others[0].identity == {"uid": "a", "dn": "A", "avatar": "/a.png"}
    room = registry.room("r")
    assert (room.rid, room.kind, ids(room.members)) == ("r", "room", ["a", "b"])
    assert registry.room_count() == 1


@pytest_twisted.inlineCallbacks
def test_rejoining_changes_nothing(registry):
    yield registry.join("m", "muc", member("a"))
    yield registry.join("m", "muc", member("b"))
    again = yield registry.join("m", "muc", member("a"))
    assert (ids(again.others), again.created, again.already) == (["b"], False, True)
    assert ids(registry.room("m").members) == ["a", "b"]


@pytest_twisted.inlineCallbacks
def test_caps_of_both_kinds(registry):
    yield registry.join("r", "room", member("a"))
    yield registry.join("r", "room", member("b"))
    assert (yield refused(registry.join("r", "room", member("c")))) == (
        errors.FULL, "Max number of members per room already reached")
    for cid in "abc":
        yield registry.join("m", "muc", member(cid))
    assert (yield refused(registry.join("m", "muc", member("d")))) == (
        errors.FULL, "Max number of members per multi room already reached")


@pytest_twisted.inlineCallbacks
def test_a_room_keeps_its_kind(registry):
    yield registry.join("r", "room", member("a"))
    assert (yield refused(registry.join("r", "muc", member("b")))) == (errors.BAD_PARAMETERS, "Room r is not a multiroom")
    yield registry.join("m", "muc", member("a"))
    assert (yield refused(registry.join("m", "room", member("b")))) == (errors.BAD_PARAMETERS, "Room m is not a room")


@pytest_twisted.inlineCallbacks
def test_the_per_user_muc_cap_counts_rooms_not_devices(registry):
    yield registry.join("m1", "muc", member("a1", "alice"))
    yield registry.join("m1", "muc", member("a2", "alice"))  # a second device, same room
    yield registry.join("m2", "muc", member("a1", "alice"))
    assert (yield refused(registry.join("m3", "muc", member("a2", "alice")))) == (
        errors.TOO_MANY_ROOMS, "Max number of multi rooms per user already reached")
    yield registry.join("r", "room", member("a1", "alice"))  # P2P rooms do not count
    yield registry.leave("m2", "a1")
    yield registry.join("m3", "muc", member("a2", "alice"))


@pytest_twisted.inlineCallbacks
def test_leave_and_not_a_member(registry):
    yield registry.join("r", "room", member("a"))
    yield registry.join("r", "room", member("b"))
    result = yield registry.leave("r", "a")
    assert (result.rid, result.kind, result.left.connection_id, ids(result.remaining)) == ("r", "room", "a", ["b"])
    assert result.left.identity["avatar"] == "/a.png"
    assert (yield refused(registry.leave("r", "a"))) == (errors.NOT_A_MEMBER, "Not member of room r")
    yield registry.join("m", "muc", member("b"))
    assert (yield refused(registry.leave("m", "a"))) == (errors.NOT_A_MEMBER, "Not member of multiroom m")
    assert (yield refused(registry.leave("nowhere", "a"))) == (errors.NOT_A_MEMBER, "Not member of room nowhere")
    yield registry.leave("r", "b")
    assert registry.room("r") is None


@pytest_twisted.inlineCallbacks
def test_leave_all_leaves_every_room_and_frees_the_seats(registry):
    yield registry.join("r", "room", member("a"))
    yield registry.join("r", "room", member("b"))
    yield registry.join("m", "muc", member("a"))
    results = yield registry.leave_all("a")
    assert sorted((r.rid, ids(r.remaining)) for r in results) == [("m", []), ("r", ["b"])]
    assert (yield registry.leave_all("a")) == []
    assert registry.room("m") is None and registry.room_count() == 1
    joined = yield registry.join("r", "room", member("c"))
    assert ids(joined.others) == ["b"]
