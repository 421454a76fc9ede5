"""Closing a long-polling session: what was queued first, the CLOSE after.

socket.io-client handles the messages of a poll response a tick after it
read them, and drops them once it has read a CLOSE; so the server sends the
queued packets in one response and the CLOSE in the next, as engine.io does.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from jsongle.engineio.polling import PollingTransport
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.randompool import RandomPool, SessionIds


def opened() -> tuple[EngineServer, PollingTransport, Clock]:
    clock = Clock()
    engine = EngineServer(EngineOptions(), clock, lambda session: None, SessionIds(RandomPool()))
    transport = PollingTransport()
    transport.session = engine.open(transport, "127.0.0.1", upgrades=[])
    first = DummyRequest([b""])
    transport.handle_get(first)
    assert b"".join(first.written).startswith(b"0{")
    return engine, transport, clock


def get(transport: PollingTransport) -> bytes:
    request = DummyRequest([b""])
    transport.handle_get(request)
    assert request.finished, "the GET was held"
    return b"".join(request.written)


def test_queued_packets_then_close_in_the_next_response():
    engine, transport, _ = opened()
    session = transport.session
    session.send("42[\"jsongle\",{\"code\":429001}]")
    session.send("41")
    session.close()
    assert get(transport) == b'442["jsongle",{"code":429001}]\x1e441'
    assert engine.find(session.sid) is session  # still there for the CLOSE
    assert get(transport) == b"1"
    assert engine.find(session.sid) is None


def test_pending_get_gets_the_queue_and_the_next_get_the_close():
    engine, transport, _ = opened()
    session = transport.session
    held = DummyRequest([b""])
    transport.handle_get(held)
    assert not held.finished
    session.send("41")
    assert b"".join(held.written) == b"441"  # a held GET is answered at once
    session.send("42[\"x\"]")
    session.close()
    assert get(transport) == b'442["x"]'
    assert get(transport) == b"1"
    assert engine.find(session.sid) is None


def test_nothing_queued_closes_at_once():
    engine, transport, _ = opened()
    session = transport.session
    held = DummyRequest([b""])
    transport.handle_get(held)
    session.close()
    assert held.finished and b"".join(held.written) == b"1"
    assert engine.find(session.sid) is None


def test_a_client_that_never_comes_back_is_forgotten_after_ping_timeout():
    engine, transport, clock = opened()
    session = transport.session
    session.send("41")
    session.close()
    assert get(transport) == b"441"
    clock.advance(EngineOptions().ping_timeout / 1000.0)
    assert engine.find(session.sid) is None
