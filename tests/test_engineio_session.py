"""Engine.IO sessions and the Socket.IO layer on a fake transport and task.Clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock

from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.session import PING_TIMEOUT, TRANSPORT_CLOSE, EngineSession
from jsongle.socketio import packet as sio
from jsongle.interfaces import ConnectRefused
from jsongle.randompool import RandomPool, SessionIds
from jsongle.socketio.server import SocketIOServer

OPTIONS = EngineOptions(ping_interval=300, ping_timeout=200, max_payload=1000)


class FakeTransport:
    """Records what the session sends and whether it was closed."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[Packet] = []
        self.closed: list[bool] = []

    def send(self, packets: list[Packet]) -> None:
        self.sent.extend(packets)

    def close(self, notify: bool = True) -> None:
        self.closed.append(notify)

    def take(self) -> list[Packet]:
        sent, self.sent = self.sent, []
        return sent


class RecordingListener:
    def __init__(self) -> None:
        self.messages: list[eio.Data] = []
        self.closes: list[str] = []
        self.pongs = 0

    def on_message(self, data: eio.Data) -> None:
        self.messages.append(data)

    def on_pong(self) -> None:
        self.pongs += 1

    def on_close(self, reason: str) -> None:
        self.closes.append(reason)


def open_session(options: EngineOptions = OPTIONS):
    clock = Clock()
    listeners: list[RecordingListener] = []

    def on_open(session: EngineSession) -> None:
        listener = RecordingListener()
        listeners.append(listener)
        session.listener = listener

    server = EngineServer(options, clock, on_open, SessionIds(RandomPool()))
    transport = FakeTransport()
    session = server.open(transport, "127.0.0.1", upgrades=["websocket"])
    return clock, server, transport, session, listeners[0]


def test_open_packet():
    _, server, transport, session, _ = open_session()
    (opening,) = transport.take()
    assert opening.type == eio.OPEN
    assert json.loads(opening.data) == {
        "sid": session.sid,
        "upgrades": ["websocket"],
        "pingInterval": 300,
        "pingTimeout": 200,
        "maxPayload": 1000,
    }
    assert server.find(session.sid) is session
    assert len(server) == 1


def test_sids_are_unique_and_url_safe():
    sids = {open_session()[3].sid for _ in range(50)}
    assert len(sids) == 50
    assert all(sid.replace("-", "").replace("_", "").isalnum() for sid in sids)


def test_ping_after_ping_interval():
    clock, _, transport, _, _ = open_session()
    transport.take()
    clock.advance(0.299)
    assert transport.take() == []
    clock.advance(0.001)
    assert transport.take() == [Packet(eio.PING)]


def test_ping_timeout_closes():
    clock, server, transport, session, listener = open_session()
    transport.take()
    clock.advance(0.3)
    assert transport.take() == [Packet(eio.PING)]
    clock.advance(0.199)
    assert not session.closed
    clock.advance(0.001)
    assert session.closed
    assert listener.closes == [PING_TIMEOUT]
    assert transport.closed == [True]
    assert server.find(session.sid) is None
    assert not clock.getDelayedCalls()


def test_pong_resets_the_heartbeat():
    clock, _, transport, session, listener = open_session()
    transport.take()
    for _ in range(5):
        clock.advance(0.3)
        assert transport.take() == [Packet(eio.PING)]
        clock.advance(0.15)
        session.receive(Packet(eio.PONG))
    assert not session.closed
    # The next ping comes a full interval after the pong, not before.
    clock.advance(0.299)
    assert transport.take() == []
    clock.advance(0.001)
    assert transport.take() == [Packet(eio.PING)]
    assert listener.closes == []
    # The layer above hears each pong (what was sent before is had).
    assert listener.pongs == 5


def test_client_close():
    clock, server, transport, session, listener = open_session()
    session.receive(Packet(eio.CLOSE))
    assert session.closed
    assert listener.closes == [TRANSPORT_CLOSE]
    assert transport.closed == [False]  # nothing more to tell the client
    assert server.find(session.sid) is None
    assert not clock.getDelayedCalls()
    # Later packets and timers do nothing.
    session.receive(Packet(eio.MESSAGE, "late"))
    assert listener.messages == []



def test_an_ended_session_lets_go_of_its_transport():
    """The layer above may keep an ended session (a client that may resume):
    it must not keep the dead connection's objects alive with it."""
    for end in ("lost", "closed", "client close"):
        _, _, transport, session, _ = open_session()
        if end == "lost":
            session.transport_lost(transport, TRANSPORT_CLOSE)
        elif end == "closed":
            session.close()
        else:
            session.receive(Packet(eio.CLOSE))
        assert session.closed and session.transport is not transport
        assert session.transport.name == transport.name
        session.send("late")  # nothing to send it to, and no error
        assert session.describe()["transport"] == transport.name
    # A transport that still serves the ended session (long-polling's last GET) stays.
    _, _, transport, session, _ = open_session()
    transport.lingers = True
    session.close()
    assert session.transport is transport

def test_listener_gets_messages():
    _, _, transport, session, listener = open_session()
    session.receive(Packet(eio.MESSAGE, "2[\"a\"]"))
    session.receive(Packet(eio.MESSAGE, b"\x00bin"))
    session.receive(Packet(eio.NOOP))
    assert listener.messages == ['2["a"]', b"\x00bin"]


def test_send_and_send_many():
    _, _, transport, session, _ = open_session()
    transport.take()
    session.send("x")
    session.send_many(["a", b"b"])
    assert transport.take() == [Packet(eio.MESSAGE, "x"), Packet(eio.MESSAGE, "a"), Packet(eio.MESSAGE, b"b")]
    session.close()
    transport.take()
    session.send("after")
    assert transport.take() == []


def test_unexpected_open_is_a_parse_error():
    _, _, transport, session, listener = open_session()
    session.receive(Packet(eio.OPEN, "{}"))
    assert session.closed and listener.closes == ["parse error"]


def test_server_close_all():
    clock, server, transport, session, listener = open_session()
    server.close_all()
    assert session.closed and listener.closes == ["server shutting down"]
    assert len(server) == 0


# -- Socket.IO on top ------------------------------------------------------


class RecordingApplication:
    event_name = "message"

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.connected: list[Any] = []
        self.events: list[tuple[str, list[Any]]] = []
        self.disconnected: list[str] = []

    def connect(self, connection, auth):
        if self.refuse:
            raise ConnectRefused(self.refuse)
        self.connected.append((connection, auth))
        connection.emit("hello", connection.sid)

    def event(self, connection, name, args, ack):
        self.events.append((name, args))
        if ack is not None:
            ack("got", name)

    def disconnect(self, connection, reason):
        self.disconnected.append(reason)


def socketio_session(app: RecordingApplication, connect_timeout: float = 1.0):
    clock = Clock()
    ids = SessionIds(RandomPool())
    socketio = SocketIOServer({"/": app}, clock, connect_timeout, ids, lambda reason, namespace: None)
    server = EngineServer(OPTIONS, clock, socketio.on_engine_open, ids)
    transport = FakeTransport()
    session = server.open(transport, "127.0.0.1", upgrades=[])
    transport.take()
    return clock, transport, session


def messages(transport: FakeTransport) -> list[eio.Data]:
    return [p.data for p in transport.take() if p.type == eio.MESSAGE]


def test_socketio_no_connect_within_timeout_closes():
    clock, transport, session = socketio_session(RecordingApplication(), connect_timeout=1.0)
    # Heartbeats keep the Engine.IO session alive meanwhile.
    for _ in range(3):
        clock.advance(0.3)
        session.receive(Packet(eio.PONG))
    assert not session.closed  # at 0.9 s
    clock.advance(0.15)
    assert session.closed
    assert transport.closed == [True]
    assert not clock.getDelayedCalls()


def test_socketio_connect_cancels_the_timeout():
    app = RecordingApplication()
    clock, transport, session = socketio_session(app, connect_timeout=1.0)
    session.receive(Packet(eio.MESSAGE, '0{"appToken":"t"}'))
    (connection, auth), = app.connected
    assert auth == {"appToken": "t"}
    reply = messages(transport)
    assert reply[0] == sio.encode(sio.Packet(sio.CONNECT, "/", {"sid": connection.sid}))[0]
    assert connection.sid != session.sid
    # What the application emitted during connect follows the CONNECT reply.
    assert reply[1] == "2" + sio.dumps(["hello", connection.sid])
    for _ in range(5):
        clock.advance(0.3)
        session.receive(Packet(eio.PONG))
    assert not session.closed


def test_socketio_refusal_keeps_the_timeout():
    app = RecordingApplication(refuse="nope")
    clock, transport, session = socketio_session(app, connect_timeout=1.0)
    session.receive(Packet(eio.MESSAGE, "0"))
    assert messages(transport) == ['4{"message":"nope"}']
    for _ in range(3):
        clock.advance(0.3)
        session.receive(Packet(eio.PONG))
    assert not session.closed
    clock.advance(0.15)
    assert session.closed


def test_socketio_unknown_namespace():
    clock, transport, session = socketio_session(RecordingApplication())
    session.receive(Packet(eio.MESSAGE, "0/nope,"))
    assert messages(transport) == ['4/nope,{"message":"Invalid namespace"}']
    assert not session.closed


def test_socketio_events_acks_and_disconnect():
    app = RecordingApplication()
    clock, transport, session = socketio_session(app)
    session.receive(Packet(eio.MESSAGE, "0"))
    messages(transport)
    session.receive(Packet(eio.MESSAGE, '2["jsongle",{"a":1}]'))
    session.receive(Packet(eio.MESSAGE, '27["ask"]'))
    session.receive(Packet(eio.MESSAGE, '51-3["bin",{"_placeholder":true,"num":0}]'))
    session.receive(Packet(eio.MESSAGE, b"\x01"))
    assert app.events == [("jsongle", [{"a": 1}]), ("ask", []), ("bin", [b"\x01"])]
    assert messages(transport) == ['37["got","ask"]', '33["got","bin"]']
    session.receive(Packet(eio.MESSAGE, "1"))
    assert app.disconnected == ["client namespace disconnect"]


def test_socketio_bad_packet_closes_the_session():
    app = RecordingApplication()
    clock, transport, session = socketio_session(app)
    session.receive(Packet(eio.MESSAGE, "0"))
    session.receive(Packet(eio.MESSAGE, "2{not json"))
    assert session.closed
    assert app.disconnected == ["parse error"]


@pytest.mark.parametrize("depth", [300, 900])
def test_socketio_deeply_nested_binary_event_closes_cleanly(depth):
    app = RecordingApplication()
    clock, transport, session = socketio_session(app)
    session.receive(Packet(eio.MESSAGE, "0"))
    head = '51-["bin",' + "[" * depth + '{"_placeholder":true,"num":0}' + "]" * depth + "]"
    session.receive(Packet(eio.MESSAGE, head))
    session.receive(Packet(eio.MESSAGE, b"\x01"))
    assert session.closed or app.events
