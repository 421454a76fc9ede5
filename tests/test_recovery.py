"""Connection state recovery without sockets: the packet log, the store, the
away timer on task.Clock, and the Socket.IO layer over recorded Engine.IO
sessions (what goes on the wire, what the application is told)."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from jsongle.engineio.session import CLIENT_GONE, FORCED_CLOSE, PING_TIMEOUT, SERVER_SHUTDOWN, TRANSPORT_CLOSE, TRANSPORT_ERROR
from jsongle.interfaces import ConnectRefused, ISessionStore, ISocketApplication
from jsongle.randompool import RandomPool, SessionIds
from jsongle.socketio.recovery import (
    BUFFER_FULL, WINDOW_PASSED, InMemorySessionStore, PacketLog, Recovery, ResumableSession, parse_offset,
)
from jsongle.socketio.server import SocketIOServer

WINDOW = 120.0


# -- the pieces ----------------------------------------------------------------


def test_offsets_are_our_decimal_counters_only():
    assert parse_offset(None) == 0  # no event received yet
    assert parse_offset("17") == 17
    for bad in ("", "-1", "1.5", "x", "1" * 16, 17, "١٢", True):
        assert parse_offset(bad) is None


def test_the_log_serves_what_follows_an_offset_and_nothing_it_cannot_vouch_for():
    log = PacketLog(limit=50)
    for index in range(5):
        offset = log.stamp()
        assert offset == str(index + 1)
        assert log.add(f"m{offset}--------".encode(), 10) is False
    assert log.after(2) == [b"m3--------", b"m4--------", b"m5--------"]
    assert log.after(5) == []
    assert log.after(0) == [b"m1--------", b"m2--------", b"m3--------", b"m4--------", b"m5--------"]
    assert log.after(6) is None  # never given
    # Past the bound, live: the older half of the bytes goes.
    log.stamp()
    log.add(b"m6--------", 10)
    assert len(log) == 2 and log.size == 20 and log.first == 5
    assert log.after(3) is None  # m4 is gone: cannot tell what it missed
    assert log.after(4) == [b"m5--------", b"m6--------"]


def test_a_pong_lets_go_of_what_was_sent_before_the_previous_one():
    log = PacketLog()
    for _ in range(2):
        log.stamp()
        log.add(b"x" * 10, 10)
    log.acknowledged()  # the first pong: nothing known to be had yet
    assert len(log) == 2
    log.stamp()
    log.add(b"y" * 10, 10)
    log.acknowledged()  # sent before the first pong: had by the second
    assert len(log) == 1 and log.first == 3 and log.after(2) == [b"y" * 10]
    log.acknowledged()
    assert len(log) == 0 and log.first == 4 and log.after(3) == []
    log.hold(True)  # away: no pong comes; everything stays
    log.stamp()
    log.add(b"z" * 10, 10)
    assert log.after(3) == [b"z" * 10]


def test_a_live_log_keeps_what_may_be_in_flight_and_an_away_one_up_to_its_limit():
    from jsongle.socketio.recovery import LIVE_BOUND

    log = PacketLog(limit=8 * LIVE_BOUND)
    packet = b"p" * 1000
    for _ in range(2 * LIVE_BOUND // 1000):
        log.stamp()
        log.add(packet, len(packet))
    assert LIVE_BOUND // 2 <= log.size <= LIVE_BOUND
    log.hold(True)  # away: up to the session's limit
    crossed = []
    for _ in range(8 * LIVE_BOUND // 1000):
        log.stamp()
        crossed.append(log.add(packet, len(packet)))
    assert crossed.count(True) == 1 and log.size > 8 * LIVE_BOUND
    assert log.after(log.first - 1) is not None and len(log) == log.last - log.first + 1


def test_an_away_log_keeps_everything_and_says_when_it_passes_its_bound():
    log = PacketLog(limit=25)
    log.hold(True)
    results = []
    for _ in range(4):
        log.stamp()
        results.append(log.add(b"z" * 10, 10))
    assert results == [False, False, True, False]  # said once, when crossed
    assert len(log) == 4 and log.after(0) is not None


def test_a_long_log_stays_within_its_bound_and_still_serves_by_offset():
    log = PacketLog(limit=1000)
    for index in range(1, 1001):
        log.stamp()
        log.add(b"%010d" % index, 10)
    # 1000 bytes at most, halved when passed: between 500 and 1000.
    assert 50 <= len(log) <= 100 and log.first == 1001 - len(log) and log.size == 10 * len(log)
    assert len(log._items) <= 100  # dropped ones do not pile up
    assert log.after(950) == [b"%010d" % n for n in range(951, 1001)]
    assert log.kept() == (log.first, [b"%010d" % n for n in range(log.first, 1001)])


def test_the_store_keeps_sessions_by_pid_and_a_newer_one_stays():
    store = InMemorySessionStore()
    verifyObject(ISessionStore, store)
    old = ResumableSession("p1", object())
    store.add(old)
    assert store.get("p1") is old and store.get("p2") is None and len(store) == 1
    newer = ResumableSession("p1", object())
    store.add(newer)
    store.remove(old)
    assert store.get("p1") is newer
    store.remove(newer)
    assert len(store) == 0


# -- the Socket.IO layer over recorded Engine.IO sessions ------------------------


class Transport:
    def __init__(self, name: str) -> None:
        self.name = name


class RecordedSession:
    """An Engine.IO session that records the Engine.IO messages written to it."""

    def __init__(self, sid: str, transport: str = "websocket") -> None:
        self.sid = sid
        self.remote = "127.0.0.1"
        self.transport = Transport(transport)
        self.listener: Any = None
        self.closed = False
        self.close_reason: Optional[str] = None
        self.written: list[Any] = []

    def send_many(self, items: list[Any]) -> None:
        if not self.closed:
            self.written.extend(items)

    def send_text(self, message: bytes) -> None:
        if not self.closed:
            self.written.append(message.decode("utf-8"))

    def close(self, reason: str = FORCED_CLOSE) -> None:
        self.lost(reason)

    def lost(self, reason: str) -> None:
        """The transport went away (or the server closed it): the listener hears it."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        listener, self.listener = self.listener, None
        listener.on_close(reason)

    def receive(self, text: str) -> None:
        self.listener.on_message(text)

    def take(self) -> list[Any]:
        written, self.written = self.written, []
        return written


@implementer(ISocketApplication)
class RecordingApplication:
    """Greets with one message, records what the layer tells it, may refuse resumes."""

    event_name = "jsongle"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.refuse_resume: Optional[str] = None

    def connect(self, connection: Any, auth: dict[str, Any]) -> None:
        connection.state = {"hello": True}
        connection.send({"hello": connection.id})
        self.calls.append(("connect", connection.id, auth))

    def event(self, connection: Any, name: str, args: list[Any], ack: Any) -> None:
        self.calls.append(("event", connection.id, args))

    def disconnect(self, connection: Any, reason: str) -> None:
        self.calls.append(("disconnect", connection.id, reason))

    def away(self, connection: Any, reason: str) -> None:
        self.calls.append(("away", connection.id, reason))

    def resume(self, connection: Any, remote: str, auth: dict[str, Any]) -> None:
        self.calls.append(("resume", connection.id, auth))
        if self.refuse_resume:
            raise ConnectRefused(self.refuse_resume)


class Stack:
    def __init__(self, window: float = WINDOW, buffer_bytes: int = 1 << 20) -> None:
        self.clock = Clock()
        self.app = RecordingApplication()
        self.store = InMemorySessionStore()
        self.outcomes: list[str] = []
        ids = SessionIds(RandomPool())
        self.recovery = Recovery(self.store, self.clock, window, buffer_bytes, ids, self.outcomes.append)
        self.server = SocketIOServer({"/": self.app}, self.clock, 45.0, ids, lambda reason, ns: None, self.recovery)
        self._count = 0

    def open(self, transport: str = "websocket") -> RecordedSession:
        self._count += 1
        session = RecordedSession(f"eio{self._count}", transport)
        self.server.on_engine_open(session)  # type: ignore[arg-type]
        return session

    def connect(self, auth: dict[str, Any]) -> tuple[RecordedSession, dict[str, Any]]:
        session = self.open()
        session.receive("0" + json.dumps(auth))
        reply = session.written.pop(0)
        assert reply.startswith("0{"), reply  # the Socket.IO CONNECT reply
        return session, json.loads(reply[1:])

    def connection(self, sid: str) -> Any:
        for session in self.store._sessions.values():
            if session.connection.id == sid:
                return session.connection
        raise KeyError(sid)


def event_args(text: str) -> list[Any]:
    assert text.startswith("2["), text
    return json.loads(text[1:])


def test_a_client_that_does_not_opt_in_sees_todays_frames():
    stack = Stack()
    session, reply = stack.connect({"appToken": "t"})
    assert set(reply) == {"sid"}
    (hello,) = session.take()
    assert event_args(hello) == ["jsongle", {"hello": reply["sid"]}]
    session.lost(TRANSPORT_CLOSE)
    assert stack.app.calls[-1] == ("disconnect", reply["sid"], TRANSPORT_CLOSE)
    assert len(stack.store) == 0


def test_with_resume_the_reply_has_a_pid_and_every_event_an_offset_on_both_send_paths():
    stack = Stack()
    session, reply = stack.connect({"resume": True})
    assert set(reply) == {"sid", "pid"} and reply["pid"] != reply["sid"]
    connection = stack.connection(reply["sid"])
    connection.send({"n": 2})
    connection.send_json(b'{"n":3}')
    written = session.take()
    assert [event_args(text) for text in written] == [
        ["jsongle", {"hello": reply["sid"]}, "1"], ["jsongle", {"n": 2}, "2"], ["jsongle", {"n": 3}, "3"],
    ]


def resumable(stack: Stack) -> tuple[RecordedSession, dict[str, Any], Any]:
    session, reply = stack.connect({"resume": True})
    session.take()
    return session, reply, stack.connection(reply["sid"])


@pytest.mark.parametrize("loss", [TRANSPORT_CLOSE, PING_TIMEOUT])
def test_a_lost_transport_goes_away_and_comes_back_with_what_it_missed(loss):
    stack = Stack()
    old, reply, connection = resumable(stack)
    connection.send({"n": 2})  # in flight on the dying transport: the client never got it
    old.lost(loss)
    assert stack.app.calls[-1] == ("away", reply["sid"], loss)
    assert stack.recovery.away_count() == 1 and connection.transport == "none"
    connection.send({"n": 3})
    connection.send_json(b'{"n":4}')
    stack.clock.advance(WINDOW - 1)
    new = stack.open("polling")
    new.receive("0" + json.dumps({"pid": reply["pid"], "offset": "1", "resume": True}))
    written = new.take()
    assert json.loads(written[0][1:]) == {"sid": reply["sid"], "pid": reply["pid"]}
    assert [event_args(text) for text in written[1:]] == [
        ["jsongle", {"n": 2}, "2"], ["jsongle", {"n": 3}, "3"], ["jsongle", {"n": 4}, "4"],
    ]
    assert stack.outcomes == ["recovered"] and stack.recovery.away_count() == 0
    assert connection.state == {"hello": True} and connection.transport == "polling"
    assert [call[0] for call in stack.app.calls] == ["connect", "away", "resume"]
    # Live again: events reach the application, sends go to the new transport.
    new.receive('2["jsongle",{"x":1}]')
    assert stack.app.calls[-1] == ("event", reply["sid"], [{"x": 1}])
    connection.send({"n": 5})
    assert event_args(new.take()[0]) == ["jsongle", {"n": 5}, "5"]
    stack.clock.advance(10 * WINDOW)  # the old window's timer is gone
    assert [call[0] for call in stack.app.calls].count("disconnect") == 0


def test_past_the_window_the_application_hears_disconnect_and_the_pid_starts_afresh():
    stack = Stack()
    old, reply, connection = resumable(stack)
    old.lost(TRANSPORT_CLOSE)
    stack.clock.advance(WINDOW - 0.001)
    assert stack.app.calls[-1][0] == "away"
    stack.clock.advance(0.001)
    assert stack.app.calls[-1] == ("disconnect", reply["sid"], WINDOW_PASSED)
    assert stack.outcomes == ["expired"] and len(stack.store) == 0 and stack.recovery.away_count() == 0
    again, fresh = stack.connect({"pid": reply["pid"], "offset": "1", "resume": True})
    assert fresh["sid"] != reply["sid"] and fresh["pid"] != reply["pid"]
    assert stack.outcomes == ["expired", "unknown"]
    assert event_args(again.take()[0]) == ["jsongle", {"hello": fresh["sid"]}, "1"]


@pytest.mark.parametrize("pid, offset", [("forged", "1"), (None, "1"), ("real", "99"), ("real", "x"), (7, "1")])
def test_a_pid_or_offset_we_cannot_serve_gets_a_fresh_session(pid, offset):
    stack = Stack()
    old, reply, connection = resumable(stack)
    old.lost(TRANSPORT_CLOSE)
    session, fresh = stack.connect({"pid": reply["pid"] if pid == "real" else pid, "offset": offset})
    assert fresh["sid"] != reply["sid"] and set(fresh) == {"sid"}  # no resume asked: no pid
    assert stack.outcomes == ["unknown"]
    assert stack.recovery.away_count() == 1  # the real session still waits for its client


def test_a_refused_resume_leaves_the_session_waiting():
    stack = Stack()
    old, reply, connection = resumable(stack)
    old.lost(TRANSPORT_CLOSE)
    stack.app.refuse_resume = "invalid appToken"
    attempt = stack.open()
    attempt.receive("0" + json.dumps({"pid": reply["pid"], "offset": "1"}))
    assert attempt.take() == ['4{"message":"invalid appToken"}']
    assert stack.outcomes == ["refused"] and stack.recovery.away_count() == 1
    stack.app.refuse_resume = None
    back = stack.open()
    back.receive("0" + json.dumps({"pid": reply["pid"], "offset": "1"}))
    assert json.loads(back.take()[0][1:]) == {"sid": reply["sid"], "pid": reply["pid"]}


def test_the_newest_connection_wins_and_the_old_transport_is_closed_silently():
    stack = Stack()
    old, reply, connection = resumable(stack)
    connection.send({"n": 2})
    new = stack.open()
    new.receive("0" + json.dumps({"pid": reply["pid"], "offset": "1"}))
    assert old.closed and old.close_reason == FORCED_CLOSE
    written = new.take()
    assert [event_args(text) for text in written[1:]] == [["jsongle", {"n": 2}, "2"]]
    assert [call[0] for call in stack.app.calls] == ["connect", "resume"]  # no away, no disconnect
    assert stack.recovery.away_count() == 0 and len(stack.store) == 1


@pytest.mark.parametrize("how", ["client disconnect", "kick", TRANSPORT_ERROR, SERVER_SHUTDOWN, CLIENT_GONE])
def test_what_ends_a_session_at_once(how):
    stack = Stack()
    session, reply, connection = resumable(stack)
    if how == "client disconnect":
        session.receive("1")
    elif how == "kick":
        connection.close()
    else:
        session.lost(how)
    assert stack.app.calls[-1][0] == "disconnect"
    assert len(stack.store) == 0 and stack.recovery.away_count() == 0
    _, fresh = stack.connect({"pid": reply["pid"], "offset": "1"})
    assert fresh["sid"] != reply["sid"]


def test_a_kick_while_away_ends_it_now():
    stack = Stack()
    session, reply, connection = resumable(stack)
    session.lost(TRANSPORT_CLOSE)
    connection.close()
    assert stack.app.calls[-1] == ("disconnect", reply["sid"], "server namespace disconnect")
    assert len(stack.store) == 0 and stack.recovery.away_count() == 0
    stack.clock.advance(WINDOW)
    assert [call[0] for call in stack.app.calls].count("disconnect") == 1


def test_an_away_session_past_its_buffer_ends_once_the_send_returned():
    stack = Stack(buffer_bytes=2048)
    session, reply, connection = resumable(stack)
    session.lost(TRANSPORT_CLOSE)
    for _ in range(30):
        connection.send({"pad": "x" * 100})
    assert stack.app.calls[-1][0] == "away"
    stack.clock.advance(0)
    assert stack.app.calls[-1] == ("disconnect", reply["sid"], BUFFER_FULL)
    assert stack.outcomes == ["expired"]
    stack.clock.advance(WINDOW)
    assert [call[0] for call in stack.app.calls].count("disconnect") == 1


def test_a_live_log_keeps_its_bound_and_lets_go_of_what_pongs_acknowledge():
    stack = Stack(buffer_bytes=2048)
    session, reply, connection = resumable(stack)
    for _ in range(100):
        connection.send({"pad": "x" * 100})
    log = stack.store.get(reply["pid"]).log
    assert log.size <= 2048 and len(log) < 100
    # Two pongs: what was sent before the first is known to be had.
    session.listener.on_pong()
    connection.send({"n": "last"})
    session.listener.on_pong()
    assert len(log) == 1
    session.listener.on_pong()
    assert len(log) == 0


def test_shutdown_closes_transports_without_disconnect_and_ends_away_sessions():
    stack = Stack()
    live, live_reply, _ = resumable(stack)
    gone, gone_reply, _ = resumable(stack)
    gone.lost(TRANSPORT_CLOSE)
    stack.server.shutdown([live])  # type: ignore[list-item]
    assert live.written == []  # no Socket.IO DISCONNECT: the transport is just closed
    assert live.closed and live.close_reason == SERVER_SHUTDOWN
    ended = {call[1] for call in stack.app.calls if call[0] == "disconnect"}
    assert ended == {live_reply["sid"], gone_reply["sid"]}
    assert len(stack.store) == 0 and stack.recovery.away_count() == 0


def test_recovery_off_ignores_resume():
    stack = Stack(window=0)
    session, reply = stack.connect({"resume": True})
    assert set(reply) == {"sid"}
    assert event_args(session.take()[0]) == ["jsongle", {"hello": reply["sid"]}]
    _, again = stack.connect({"pid": "anything", "offset": "1"})
    assert stack.outcomes == []


# -- the JSONgle application behind it ---------------------------------------------


def jsongle_stack(window: float = WINDOW, **config: Any) -> Any:
    """The real SignalingApplication (as the service wires it) behind the Socket.IO layer."""
    from jsongle.config import Config
    from jsongle.signaling.builtin import builtin_actions, builtin_queries
    from jsongle.signaling.handlers import HandlerSet
    from tests.support.fakes import Parts

    clock = Clock()
    parts = Parts(Config(**{"app_token": "t", "resume_window": window, **config}), clock, HandlerSet(builtin_queries(), builtin_actions()))
    ids = SessionIds(RandomPool())
    recovery = Recovery(InMemorySessionStore(), clock, window, 1 << 20, ids, parts.metrics.resume_outcome)
    server = SocketIOServer({"/": parts.app}, clock, 45.0, ids, lambda reason, ns: None, recovery)
    return parts, server, recovery, clock


def jsongle_client(server: Any, name: str, auth: dict[str, Any]) -> tuple[RecordedSession, dict[str, Any]]:
    session = RecordedSession(name)
    server.on_engine_open(session)
    session.receive("0" + json.dumps(auth))
    return session, json.loads(session.written.pop(0)[1:])


def jsongle_messages(session: RecordedSession) -> list[dict[str, Any]]:
    return [event_args(text)[1] for text in session.take()]


def greet_and_join(session: RecordedSession, uid: str, rid: str) -> None:
    (hello,) = jsongle_messages(session)
    transaction = hello["jsongle"]["transaction"]
    session.receive("2" + json.dumps(["jsongle", {"to": "jsongle-server", "jsongle": {
        "action": "iq-result", "query": "session-hello", "transaction": transaction, "description": {"uid": uid}}}]))
    session.receive("2" + json.dumps(["jsongle", {"to": "jsongle-server", "jsongle": {
        "action": "iq-set", "query": "session-join", "transaction": "j", "description": {"rid": rid}}}]))


def test_the_member_keeps_its_identity_and_rooms_while_away_and_leaves_at_the_window():
    parts, server, recovery, clock = jsongle_stack()
    alice, _ = jsongle_client(server, "a", {"appToken": "t"})
    greet_and_join(alice, "alice", "r1")
    bob, bob_reply = jsongle_client(server, "b", {"appToken": "t", "resume": True})
    greet_and_join(bob, "bob", "r1")
    alice.take()
    member = parts.local.get(bob_reply["sid"]).state
    bob.take()

    bob.lost(TRANSPORT_CLOSE)
    assert parts.local.get(bob_reply["sid"]).state is member and member.uid == "bob"
    assert parts.metrics.users_count._value.get() == 2
    alice.receive("2" + json.dumps(["jsongle", {"id": "m1", "to": "r1", "jsongle": {
        "action": "session-text", "namespace": "room", "description": {"text": "hi"}}}]))
    assert [m["jsongle"].get("event") for m in jsongle_messages(alice)] == ["ack"]  # no 'left'
    # Back with a wrong token: refused like a connect, and counted as a failed attempt.
    thief = RecordedSession("x")
    server.on_engine_open(thief)
    thief.receive("0" + json.dumps({"appToken": "wrong", "pid": bob_reply["pid"], "offset": "3"}))
    assert thief.take() == ['4{"message":"invalid appToken"}']
    # Back with the right one: the same Member, the missed message, then it talks in its room.
    back = RecordedSession("b2")
    server.on_engine_open(back)
    back.receive("0" + json.dumps({"appToken": "t", "pid": bob_reply["pid"], "offset": "3"}))
    written = back.take()
    assert json.loads(written[0][1:])["sid"] == bob_reply["sid"]
    assert [event_args(text)[1]["id"] for text in written[1:]] == ["m1"]
    assert parts.local.get(bob_reply["sid"]).state is member
    back.receive("2" + json.dumps(["jsongle", {"id": "m2", "to": "r1", "jsongle": {
        "action": "session-text", "namespace": "room", "description": {"text": "back"}}}]))
    assert [m["id"] for m in jsongle_messages(alice)] == ["m2"]

    back.lost(PING_TIMEOUT)
    clock.advance(WINDOW)
    (left,) = jsongle_messages(alice)
    assert left["jsongle"]["event"] == "left" and left["jsongle"]["description"]["member"]["uid"] == "bob"
    assert parts.local.get(bob_reply["sid"]) is None and parts.metrics.users_count._value.get() == 1
    samples = {s.labels["outcome"]: s.value for s in parts.metrics.resumes.metric.collect()[0].samples
               if s.name.endswith("_total")}
    assert samples == {"recovered": 1, "expired": 1, "unknown": 0, "refused": 1}


def test_a_full_server_still_lets_its_own_members_back():
    parts, server, recovery, clock = jsongle_stack(max_concurrent_users=1)
    bob, reply = jsongle_client(server, "b", {"appToken": "t", "resume": True})
    bob.lost(TRANSPORT_CLOSE)
    other = RecordedSession("o")
    server.on_engine_open(other)
    other.receive("0" + json.dumps({"appToken": "t"}))
    assert other.take() == ['4{"message":"server full"}']
    back = RecordedSession("b2")
    server.on_engine_open(back)
    back.receive("0" + json.dumps({"appToken": "t", "pid": reply["pid"], "offset": "1"}))
    assert json.loads(back.take()[0][1:])["sid"] == reply["sid"]


def test_a_log_with_binary_attachments_counts_their_bytes_when_halved():
    from jsongle.socketio.recovery import encoded_size

    log = PacketLog(limit=1 << 20)
    log.bound = 100
    log.stamp()
    attached = ['451-["jsongle",{"_placeholder":true,"num":0}]', b"\x00" * 40]
    log.add(attached, encoded_size(attached))
    for _ in range(3):
        log.stamp()
        log.add(b"t" * 10, 10)
    # Past 100 bytes: the older half goes, the attachment counted in bytes, not as 2 items.
    assert encoded_size(attached) == 85 and log.first == 2 and log.size == 30


def test_the_log_keeps_what_its_rules_say_through_bursts_pongs_absences_and_attachments():
    """Checked against the rules written plainly: live, past the bound, the
    oldest go until half of it is left (looked at on every add, and on the
    relay path every CHECK_EVERY offsets); a pong drops what the previous one
    vouched for; away, everything stays."""
    import random

    from jsongle.socketio.recovery import CHECK_EVERY, LIVE_BOUND, encoded_size

    rng = random.Random(7)
    log = PacketLog(limit=3 * LIVE_BOUND)
    model: list[tuple[int, object, int]] = []  # offset, packet, size
    crossings: list[bool] = []
    check_at = CHECK_EVERY  # the offset at which the relay path next looks at the bound
    for step in range(6000):
        choice = rng.random()
        if choice < 0.005:
            mark = log._mark
            log.acknowledged()
            model = [entry for entry in model if entry[0] > mark]
            continue
        if choice < 0.01:
            log.hold(not log.holding)
            check_at = log.last + (1 if log.holding else CHECK_EVERY)
            continue
        if choice < 0.03:
            packet: object = [f'451-["jsongle",{{"n":{step}}}]', bytes(rng.randrange(1, 3000))]
            size = encoded_size(packet)  # type: ignore[arg-type]
        else:
            size = rng.choice((90, 600, 600, 6000, rng.randrange(1, 40000)))
            packet = bytes([step % 251]) * size
        before = sum(entry[2] for entry in model)
        looks = True
        if choice < 0.5 and not isinstance(packet, list):
            # The relay path: stamped, encoded and kept in one call.
            packet = log.keep_event(b'42["jsongle",', packet)  # type: ignore[arg-type]
            assert packet == b'42["jsongle",' + bytes([step % 251]) * size + b',"%d"]' % log.last
            size = len(packet)
            looks = log.last >= check_at
            if looks:
                check_at = log.last + (1 if log.holding else CHECK_EVERY)
            crossed = log.overflowed
        else:
            log.stamp()
            crossed = log.add(packet, size)  # type: ignore[arg-type]
        assert crossed == (log.holding and before <= log.limit < before + size)
        crossings.append(crossed)
        model.append((log.last, packet, size))
        if looks and not log.holding and sum(entry[2] for entry in model) > min(3 * LIVE_BOUND, LIVE_BOUND):
            while sum(entry[2] for entry in model) > LIVE_BOUND // 2:
                del model[0]
        assert log.size == sum(entry[2] for entry in model) and len(log) == len(model)
        assert log.kept() == ((model[0][0] if model else log.last + 1), [entry[1] for entry in model])
    assert crossings.count(True) >= 3  # away logs did pass their bound
