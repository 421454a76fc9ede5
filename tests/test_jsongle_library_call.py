"""An app built on the JSONgle client library, in headless Chromium, against the daemon.

``tests/browser/jsongle_like.js`` sends exactly the message shapes the
JSONgle client library sends and expects what it expects;
``tests/browser/call_scenario.js`` is two people using it: Bob waits in a
P2P room and a MUC room, Alice joins both, calls Bob (declined), calls again
(a real video call: an ``RTCPeerConnection`` on each side with Chromium's
fake camera; the daemon, the pages and the browser share a network namespace
with nothing but loopback, see ``tests/support/browser_call_run.py``), hangs up once video frames are decoded
on both sides, reports the call's metrics, chats in both rooms and leaves.
One browser run serves every test of this module; each test checks one part
of what the pages saw.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser_call_run import MUC, P2P, namespace_command, run_call
from tests.support.browser_parity import chromium_missing

SERVER = "jsongle-server"
ALICE = {"uid": "alice", "dn": "Alice", "avatar": "https://pictures.example/alice.png", "extra": {"team": "blue", "level": 3}}
BOB = {"uid": "bob", "dn": "Bob", "avatar": "https://pictures.example/bob.png"}
CALL_FIELDS = {"sid", "action", "reason", "initiator", "responder", "description"}

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


class Run:
    """What both pages saw, and the daemon's /stats once they were done."""

    def __init__(self, results: dict[str, Any], stats: dict[str, Any]) -> None:
        self.alice = results["alice"]
        self.bob = results["bob"]
        self.stats = stats

    @staticmethod
    def received(page: dict[str, Any], action: str, **fields: Any) -> list[dict[str, Any]]:
        """The messages of ``action`` a page received whose jsongle has ``fields``."""
        return [
            m for m in page["received"]
            if m["jsongle"]["action"] == action and all(m["jsongle"].get(k) == v for k, v in fields.items())
        ]

    @staticmethod
    def sent(page: dict[str, Any], action: str) -> list[dict[str, Any]]:
        return [m for m in page["sent"] if m["jsongle"]["action"] == action]


@pytest.fixture(scope="module")
def run() -> Run:
    if namespace_command() is None:
        pytest.skip("no network namespace can be made here (unshare -n needs root, unshare -rn user namespaces)")
    report = run_call()
    assert "error" not in report, f"{report['error']}\n{report.get('daemon', '')}"
    for name, result in report["results"].items():
        assert "error" not in result, f"{name}: {result['error']}\n{report['stderr'][-4000:]}"
    return Run(report["results"], report["stats"])


def test_hello_answered_with_extra_fields(run: Run) -> None:
    for page, hello in ((run.alice, ALICE), (run.bob, BOB)):
        request = page["hello"]["request"]
        assert page["hello"]["from"] == SERVER
        assert request["action"] == "iq-get" and request["query"] == "session-hello"
        assert set(request["description"]) == {"version", "sn", "info", "connected"}
        answer = page["sent"][0]
        assert answer["jsongle"] == {
            "action": "iq-result", "query": "session-hello", "transaction": request["transaction"], "description": hello,
        }
        assert answer["to"] == SERVER
        assert page["helloAck"] == {"action": "ack", "status": "success", "transaction": request["transaction"]}
        # The library stamps its connection id, learnt from the hello, on all it sends.
        connection_id = page["received"][0]["to"]
        assert connection_id and all(m["from"] == connection_id for m in page["sent"])


def test_session_join_and_muc_join(run: Run) -> None:
    for join, query, rid in ((run.alice["p2pJoin"], "session-join", P2P), (run.alice["mucJoin"], "muc-join", MUC)):
        assert join["action"] == "iq-result" and join["query"] == query
        assert join["description"]["rid"] == rid
        [member] = join["description"]["members"]
        assert (member["uid"], member["dn"]) == ("bob", "Bob")
    for join in (run.bob["p2pJoin"], run.bob["mucJoin"]):
        assert join["description"]["members"] == []
    joined = [e for e in run.bob["events"] if e["event"] == "joined"]
    assert [(e["namespace"], e["description"]["rid"]) for e in joined] == [("room", P2P), ("muc", MUC)]
    assert all((e["description"]["member"]["uid"], e["description"]["member"]["dn"]) == ("alice", "Alice") for e in joined)


def test_member_data_is_the_whole_hello_description(run: Run) -> None:
    """PROTOCOL.md §3.5: joined, left and members show the hello description as the client sent it."""
    assert run.alice["p2pJoin"]["description"]["members"] == [BOB]
    assert run.alice["mucJoin"]["description"]["members"] == [BOB]
    events = [e for e in run.bob["events"] if e["event"] in ("joined", "left")]
    assert len(events) == 4
    assert all(e["description"]["member"] == ALICE for e in events)


def _call_messages(page: dict[str, Any], sid: str, box: str) -> list[dict[str, Any]]:
    return [m for m in page[box] if m["jsongle"].get("sid") == sid]


def test_a_declined_call(run: Run) -> None:
    propose = run.sent(run.alice, "session-propose")[0]
    sid = propose["jsongle"]["sid"]
    assert propose["namespace"] == "call" and propose["to"] == P2P
    assert set(propose["jsongle"]) == CALL_FIELDS and propose["jsongle"]["reason"] == ""
    assert set(propose["jsongle"]["description"]) == {"initiated", "media"}
    assert propose["jsongle"]["description"]["media"] == "video"
    seen = _call_messages(run.alice, sid, "received")
    assert [(m["from"], m["jsongle"]["action"], m["jsongle"]["reason"]) for m in seen] == [
        (SERVER, "session-info", "trying"),
        (P2P, "session-info", "ringing"),
        (P2P, "session-decline", ""),
    ]
    trying = seen[0]["jsongle"]
    assert (trying["initiator"], trying["responder"]) == (propose["jsongle"]["initiator"], P2P)
    assert set(trying["description"]) == {"tried"}
    assert {"rang", "sent", "relayed"} == set(seen[1]["jsongle"]["description"])
    assert "ended" in seen[2]["jsongle"]["description"]
    # Bob saw the propose as the library does: from the room, namespace "call" kept.
    [received] = _call_messages(run.bob, sid, "received")
    assert received["from"] == P2P and received["namespace"] == "call"
    assert received["jsongle"]["description"]["media"] == "video"
    # Bob answered to the room, as the library does (the caller is the propose's `from`).
    assert [(m["to"], m["jsongle"]["action"]) for m in _call_messages(run.bob, sid, "sent")] == [
        (P2P, "session-info"), (P2P, "session-decline")]
    assert run.alice["calls"][0] == {"sid": sid, "endedReason": "declined", "local": False}
    assert run.bob["calls"][0] == {"sid": sid, "endedReason": "declined", "local": True}


def test_a_video_call_with_media_flowing_then_ended_on_both_sides(run: Run) -> None:
    sid = run.sent(run.alice, "session-propose")[1]["jsongle"]["sid"]
    for page in (run.alice, run.bob):
        assert page["media"]["framesDecoded"] > 0
        pair = page["media"]["pair"]
        assert pair["local"] in ("127.0.0.1", "::1") and pair["localType"] == "host"
        # A peer-reflexive remote (its check came before its candidate) has its address withheld.
        assert (pair["remote"], pair["remoteType"]) in (("127.0.0.1", "host"), ("::1", "host"), ("", "prflx")), pair
    steps = lambda page, box: [  # noqa: E731
        (m["jsongle"]["action"], m["jsongle"]["reason"])
        for m in _call_messages(page, sid, box) if m["jsongle"]["action"] not in ("transport-info", "session-metrics")
    ]
    assert steps(run.alice, "sent") == [
        ("session-propose", ""), ("session-initiate", ""), ("session-info", "active"), ("session-terminate", "")]
    assert steps(run.bob, "sent") == [
        ("session-info", "ringing"), ("session-proceed", ""), ("session-accept", ""),
        ("session-info", "active"), ("session-info", "mute"), ("session-info", "unmute")]
    assert steps(run.alice, "received") == [("session-info", "trying")] + steps(run.bob, "sent")
    assert steps(run.bob, "received") == steps(run.alice, "sent")
    # Candidates went both ways, as transport-info.
    for page in (run.alice, run.bob):
        assert any(m["jsongle"]["action"] == "transport-info" for m in _call_messages(page, sid, "received"))
    for message in _call_messages(run.bob, sid, "received"):
        assert message["from"] == P2P and message["namespace"] == "call"
        assert set(message["jsongle"]) == CALL_FIELDS
        if message["jsongle"]["action"] != "session-propose":  # the propose gets "trying" instead
            assert {"sent", "relayed"} <= set(message["jsongle"]["description"])
    accept = [m for m in _call_messages(run.alice, sid, "received") if m["jsongle"]["action"] == "session-accept"][0]
    assert accept["jsongle"]["description"]["answer"]["type"] == "answer"
    mute = [m for m in _call_messages(run.alice, sid, "received") if m["jsongle"]["reason"] == "mute"][0]
    assert mute["jsongle"]["description"]["media"] == "audio"
    # Ended on both sides.
    assert run.alice["calls"][1] == {"sid": sid, "endedReason": "terminated", "local": True}
    assert run.bob["calls"][1] == {"sid": sid, "endedReason": "terminated", "local": False}
    assert "call ended" in run.bob["steps"]


def test_session_metrics_counted_not_relayed(run: Run) -> None:
    [metrics] = run.sent(run.alice, "session-metrics")
    assert metrics["to"] == P2P
    assert metrics["jsongle"]["namespace"] == "call" and metrics["jsongle"]["sid"]
    assert {"mos", "duration", "ua", "route", "issuedAt"} == set(metrics["jsongle"]["description"])
    assert not run.received(run.bob, "session-metrics")
    assert run.stats["p2p_duration_total"] == 7
    assert run.stats["p2p_total"] == 1  # the accepted call only


def test_texts_custom_data_and_the_automatic_acks(run: Run) -> None:
    ids = run.alice["ids"]
    events = run.alice["events"]

    def acks(mid: str) -> list[tuple[str, str, str]]:
        return [(e["from"], e["namespace"], e["description"]["type"]) for e in events
                if e["event"] == "ack" and e["description"]["mid"] == mid]

    assert acks(ids["text"]) == [(SERVER, "message", "server-received"), (P2P, "message", "received"), (P2P, "message", "read")]
    assert acks(ids["custom"]) == [(SERVER, "message", "server-received"), (P2P, "message", "received")]
    bob_in_muc = f"{MUC}/bob"
    assert acks(ids["mucText"]) == [(SERVER, "muc", "server-received"), (bob_in_muc, "muc", "received"), (bob_in_muc, "muc", "read")]
    assert acks(ids["mucCustom"]) == [(SERVER, "muc", "server-received"), (bob_in_muc, "muc", "received")]
    # Bob's automatic acks went to the bare sender: the room, without "/alice".
    automatic = [m for m in run.sent(run.bob, "session-event") if m["jsongle"]["description"].get("type") == "received"]
    assert [(m["to"], m["jsongle"]["namespace"]) for m in automatic] == [
        (P2P, "message"), (P2P, "message"), (MUC, "muc"), (MUC, "muc")]
    # What Bob received, additionalContent and custom content intact.
    by_id = {m["id"]: m for m in run.bob["messages"]}
    text = by_id[ids["text"]]
    assert text["from"] == P2P and text["description"]["content"] == "hello Bob"
    assert text["description"]["additionalContent"] == {"file": {"name": "notes.txt", "size": 3}}
    assert by_id[ids["custom"]]["description"]["content"] == {"kind": "whiteboard", "strokes": [[1, 2], [3, 4]]}
    muc_text = by_id[ids["mucText"]]
    assert muc_text["from"] == f"{MUC}/alice" and muc_text["description"]["additionalContent"] == {"mention": "bob"}
    assert by_id[ids["mucCustom"]]["description"]["content"] == {"poll": "lunch?"}
    assert run.stats["messages_total"] == 1  # session-text in muc


def test_typing_and_reactions_in_both_namespaces(run: Run) -> None:
    ids = run.alice["ids"]
    events = run.alice["events"]
    reactions = [(e["from"], e["namespace"], e["description"]["mid"], e["description"]["type"]) for e in events if e["event"] == "reaction"]
    assert reactions == [(P2P, "message", ids["text"], "\u2764\ufe0f"), (f"{MUC}/bob", "muc", ids["mucText"], "\U0001f44d")]
    typing = [(e["from"], e["namespace"], e["description"]["state"]) for e in events if e["event"] == "typing"]
    assert sorted(typing) == sorted([(f"{MUC}/bob", "muc", "composing"), (P2P, "message", "active"), (f"{MUC}/bob", "muc", "active")])
    [bob_typing] = [e for e in run.bob["events"] if e["event"] == "typing"]
    assert (bob_typing["from"], bob_typing["namespace"], bob_typing["description"]["state"]) == (P2P, "message", "composing")
    assert run.stats["reactions_total"] == 1  # the muc one


def test_leaving_both_rooms(run: Run) -> None:
    assert [(leave["action"], leave["query"], leave["description"]) for leave in run.alice["leaves"]] == [
        ("iq-result", "session-leave", {"rid": P2P}), ("iq-result", "session-leave", {"rid": MUC})]
    left = [e for e in run.bob["events"] if e["event"] == "left"]
    assert [(e["from"], e["namespace"], e["description"]["rid"]) for e in left] == [(SERVER, "room", P2P), (SERVER, "muc", MUC)]
    assert all(e["description"]["member"]["uid"] == "alice" for e in left)
