"""Every id a client sends is type- and length-checked (400001), in the application.

Each field of PROTOCOL §2-§5 that the server reads or echoes gets every kind
of wrong value: a number, a boolean, an object, an array, null, an empty and
an over-long string.  The limits come from the config (maxIdLength,
maxDisplayNameLength); a value exactly at the limit is accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from jsongle.config import Config
from jsongle.signaling.fields import FieldLimits, message_problem
from tests.test_signaling_unit import SERVER_ID, FakeConnection, Server, pair

LIMITS = Config(max_id_length=40, max_display_name_length=8)

WRONG_TYPES: dict[str, Any] = {
    "number": 42,
    "float": 1.5,
    "boolean": True,
    "object": {"a": "b"},
    "empty object": {},
    "array": ["r1"],
    "empty array": [],
    "null": None,
}
WRONG = {**WRONG_TYPES, "empty": "", "too long": "x" * 41}


def problem_of(value: Any) -> str:
    if isinstance(value, str):
        return "must not be empty" if not value else "is longer than 40 characters"
    return "must be a string"


def hello(server: Server, description: Any) -> list[dict[str, Any]]:
    connection = FakeConnection("sid-x")
    server.app.connect(connection, {})
    transaction = connection.take_one()["jsongle"]["transaction"]
    server.send(connection, SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": transaction, "description": description})
    return [message["jsongle"] for message in connection.take()]


@pytest.mark.parametrize("field", ["id", "to"])
@pytest.mark.parametrize("kind", list(WRONG))
def test_bad_envelope_id(field, kind):
    server = Server(LIMITS)
    alice, bob = pair(server)
    bob.take()
    value = WRONG[kind]
    message = {"id": "m1", "from": alice.sid, "to": "r1", "jsongle": {"action": "session-text", "description": {}}}
    message[field] = value
    server.app.event(alice, "jsongle", [message], None)
    assert alice.take_one()["jsongle"] == {
        "action": "session-error",
        "description": {"errorCode": 400001, "errorDetails": f"Invalid '{field}' parameter: {problem_of(value)}"},
    }
    assert bob.take() == []


@pytest.mark.parametrize("field", ["transaction", "namespace", "sid"])
@pytest.mark.parametrize("kind", list(WRONG))
def test_bad_jsongle_id(field, kind):
    server = Server(LIMITS)
    alice, bob = pair(server)
    bob.take()
    value = WRONG[kind]
    server.send(alice, "r1", {"action": "session-propose", field: value})
    assert alice.take_one()["jsongle"]["description"] == {
        "errorCode": 400001,
        "errorDetails": f"Invalid '{field}' parameter: {problem_of(value)}",
    }
    assert bob.take() == []


@pytest.mark.parametrize("kind", list(WRONG))
@pytest.mark.parametrize("query", ["session-join", "muc-join", "session-leave"])
def test_bad_rid(kind, query):
    server = Server(LIMITS)
    alice = server.connect("alice")
    value = WRONG[kind]
    answer = server.join(alice, value, query)  # type: ignore[arg-type]
    details = f"Invalid 'rid' parameter: {problem_of(value)}" if kind == "too long" else "Missing 'rid' parameter"
    assert answer["action"] == "iq-error"
    assert answer["description"] == {"errorCode": 400001, "errorDetails": details}
    assert server.rooms.room_count() == 0


@pytest.mark.parametrize("kind", list(WRONG))
def test_bad_uid(kind):
    value = WRONG[kind]
    details = f"Invalid 'uid' parameter: {problem_of(value)}" if kind == "too long" else "Missing 'uid' parameter"
    ack, error = hello(Server(LIMITS), {"uid": value, "dn": "Alice"})
    assert ack["action"] == "ack" and ack["status"] == "failed"
    assert error["description"] == {"errorCode": 400001, "errorDetails": details}


@pytest.mark.parametrize("kind", list(WRONG))
def test_bad_display_name(kind):
    value = "x" * 9 if kind == "too long" else WRONG[kind]
    problem = "is longer than 8 characters" if kind == "too long" else problem_of(value)
    ack, error = hello(Server(LIMITS), {"uid": "alice", "dn": value})
    assert ack["status"] == "failed"
    assert error["description"] == {"errorCode": 400001, "errorDetails": f"Invalid 'dn' parameter: {problem}"}


def test_values_at_the_limits_are_accepted():
    server = Server(LIMITS)
    uid, rid = "u" * 40, "r" * 40
    (ack,) = hello(server, {"uid": uid, "dn": "d" * 8})
    assert ack["status"] == "success"
    alice = server.connect("a" * 40)
    assert server.join(alice, rid)["action"] == "iq-result"
    server.send(alice, SERVER_ID, {"action": "session-text", "transaction": "t" * 40, "namespace": "n" * 40, "sid": "s" * 40})
    assert alice.take_one()["jsongle"]["event"] == "ack"


def test_hello_without_dn_is_fine():
    (ack,) = hello(Server(LIMITS), {"uid": "alice"})
    assert ack["status"] == "success"


def test_message_problem_reports_the_first_bad_field():
    limits = FieldLimits(4, 4)
    assert message_problem({"jsongle": {}}, limits) is None
    assert message_problem({"id": 1, "to": 2, "jsongle": {}}, limits) == "Invalid 'id' parameter: must be a string"
    assert message_problem({"jsongle": {"sid": "12345"}}, limits) == "Invalid 'sid' parameter: is longer than 4 characters"
