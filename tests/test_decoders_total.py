"""Every decoder is total: arbitrary input gives a value or the one declared error.

The pure codecs have their own property tests (test_engineio_packet.py,
test_socketio_packet.py); these cover what sits on top of them: the polling
POST body, Socket.IO messages into a live session, JSONgle messages into the
application (arbitrary JSON, and envelopes whose fields are wrong in every
way), the REST body of PUT /logs/levels and every configuration key.  The
whole stack runs on a task.Clock, and an "internal error" answer or a logged
failure counts as a failure of the property.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from jsongle.config import KEYS, ConfigError, load_config
from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet
from jsongle.engineio.polling import PollingTransport
from jsongle.signaling.fields import FieldLimits, message_problem
from tests.test_cleanup import SERVER_ID, TOKEN, Stack
from tests.test_rest import Harness

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Wrong in every way of the spec: types, empty, too long; plus good values.
field_values = st.one_of(
    st.sampled_from([None, 0, -1, 1.5, True, False, "", {}, [], ["r1"], {"rid": "r1"}, "x" * 300, "r1", SERVER_ID, "muc", "room"]),
    json_values,
)
ENVELOPE_FIELDS = ("id", "from", "to")
JSONGLE_FIELDS = ("action", "query", "transaction", "namespace", "sid", "event", "description")
ACTIONS = ("iq-set", "iq-result", "session-propose", "session-info", "session-accept", "session-text", "session-custom", "session-event", "session-metrics")


@st.composite
def near_jsongle(draw: Any) -> dict[str, Any]:
    """An envelope with a plausible action, each field present or not, right or wrong."""
    jsongle: dict[str, Any] = {"action": draw(st.sampled_from(ACTIONS) | field_values)}
    for name in JSONGLE_FIELDS[1:]:
        if draw(st.booleans()):
            jsongle[name] = draw(field_values)
    if draw(st.booleans()):
        jsongle["description"] = {k: draw(field_values) for k in draw(st.lists(st.sampled_from(["rid", "uid", "dn", "duration", "error"]), max_size=3))}
    message: dict[str, Any] = {"jsongle": jsongle}
    for name in ENVELOPE_FIELDS:
        if draw(st.booleans()):
            message[name] = draw(field_values)
    return message


class FailureWatch:
    """Collects logged failures (Autobahn and our callbacks log, never raise)."""

    def __init__(self) -> None:
        self.failures: list[Any] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            self.failures.append(event)

    def __enter__(self) -> "FailureWatch":
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self)


def no_internal_error(stack: Stack, transports: list[Any]) -> None:
    for transport in transports:
        for message in stack.messages(transport):
            assert message["jsongle"].get("description", {}) != {"errorCode": 500001, "errorDetails": "internal error"}, message


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_polling_body_is_a_packet_error_or_packets(body):
    stack = Stack(PollingTransport)
    session, transport = stack.client("alice", "r1")
    with FailureWatch() as watch:
        try:
            transport.handle_post(body)
        except eio.PacketError:
            transport.fail()
            assert session.closed
    assert watch.failures == []


@SETTINGS
@given(st.lists(st.text(max_size=80) | st.binary(max_size=20) | st.sampled_from(['42["jsongle",null]', "451-[\"jsongle\",{}]", "3", "1", "0/x,", "44{}"]), min_size=1, max_size=5))
def test_socketio_messages_never_raise(frames):
    stack = Stack()
    alice, alice_transport = stack.client("alice", "r1")
    bob, bob_transport = stack.client("bob", "r1")
    with FailureWatch() as watch:
        for frame in frames:
            alice.receive(Packet(eio.MESSAGE, frame))
    assert watch.failures == []
    no_internal_error(stack, [alice_transport, bob_transport])
    # Bob's session is untouched whatever Alice sent.
    assert not bob.closed


@SETTINGS
@given(st.lists(json_values | near_jsongle(), min_size=1, max_size=6))
def test_jsongle_messages_get_clean_answers(messages):
    stack = Stack(rate_limit_per_second=0)
    alice, alice_transport = stack.client("alice", "r1")
    bob, bob_transport = stack.client("bob", "r1")
    with FailureWatch() as watch:
        for message in messages:
            stack.emit(alice, message)
    assert watch.failures == []
    no_internal_error(stack, [alice_transport, bob_transport])
    assert not alice.closed and not bob.closed
    # Both still relay to each other.
    stack.emit(bob, {"to": "r1", "jsongle": {"action": "session-text", "n": 1}})
    assert any(m["jsongle"].get("n") == 1 for m in stack.messages(alice_transport))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["id", "to", "from", "x"]), field_values, max_size=3), st.dictionaries(st.text(max_size=12), field_values, max_size=5))
def test_message_problem_is_a_string_or_none(envelope, jsongle):
    problem = message_problem({**envelope, "jsongle": jsongle}, FieldLimits(8, 8))
    assert problem is None or problem.startswith("Invalid '")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode("utf-8")))
def test_rest_level_body_is_a_400_or_a_200(body):
    harness = Harness()
    status, answer = harness.json("PUT", "/logs/levels", data=body)
    assert status in (200, 400)
    if status == 400:
        assert answer["errorCode"] == 400001 and isinstance(answer["errorMsg"], str)


@SETTINGS
@given(st.sampled_from(sorted(KEYS)), st.text(max_size=30).filter(lambda t: "\x00" not in t))
def test_config_value_is_a_value_or_a_config_error(key, value):
    try:
        config, _ = load_config(None, {key: value})
    except ConfigError as error:
        assert error.key == key
    else:
        assert getattr(config, KEYS[key].field) is not None
