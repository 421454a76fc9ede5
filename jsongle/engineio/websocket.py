"""The WebSocket transport of Engine.IO v4, on Autobahn's frame layer.

A connection either opens a new session (``transport=websocket`` without a
sid) or upgrades an existing polling session (with its sid): ``2probe`` /
``3probe``, then ``5``. The opening handshake is answered by the resource
(:mod:`jsongle.engineio.wshandshake`), which then opens the protocol.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Optional

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IDelayedCall

from jsongle.engineio import packet as eio
from jsongle.engineio.backpressure import OutgoingBudget, watch_transport
from jsongle.engineio.packet import Packet
from jsongle.engineio.server import EngineServer
from jsongle.engineio.session import CLIENT_GONE, PARSE_ERROR, TRANSPORT_CLOSE, TRANSPORT_ERROR, EngineSession
from jsongle.engineio.wsframes import FastFrameProtocol, Message, WriteBatch, frame_header, protocol_options

PROBE = "probe"
_OPEN = WebSocketServerProtocol.STATE_OPEN
#: The close code a browser sends when its page is closed or left.
GOING_AWAY = 1001
_MESSAGE = eio.MESSAGE.encode("ascii")


class EngineWebSocketProtocol(FastFrameProtocol):
    """One WebSocket connection carrying (or probing for) an Engine.IO session."""

    name = "websocket"
    #: Nothing to hand over once its session ended: the session lets go of it.
    lingers = False

    # Autobahn copies its options from the factory to every connection and
    # pretty-prints the whole list for a debug line, whatever the level: a
    # fifth of what a short connection cost. The factory sets them once on
    # a protocol class of its own instead (see EngineWebSocketFactory), and
    # Autobahn's list is left empty.
    CONFIG_ATTRS: tuple[str, ...] = ()
    FACTORY_OPTIONS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)

    session: Optional[EngineSession] = None
    _probing: Optional[EngineSession] = None
    _upgrade_timer: Optional[IDelayedCall] = None
    _reject_after_open = False
    _budget: Optional[OutgoingBudget] = None

    @property
    def engine(self) -> EngineServer:
        return self.factory.engine

    # -- admission (before the WebSocket opens) ------------------------------

    def probe(self, session: EngineSession) -> None:
        """This connection came with ``session``'s sid: it probes to take over from polling.

        A session that cannot be upgraded (closed, not on polling, another
        probe under way) gets the WebSocket opened and closed at once: what
        Engine.IO clients expect.
        """
        if session.closed or session.transport.name != "polling" or session.upgrading:
            self._reject_after_open = True
            return
        session.upgrading = True
        self._probing = session

    # -- Autobahn callbacks ------------------------------------------------

    def onOpen(self) -> None:
        self._budget = watch_transport(self.transport, self.engine.options.max_buffered_bytes, self._not_reading)
        if self._reject_after_open:
            self.sendClose()
            return
        probing = self._probing
        if probing is not None:
            self._upgrade_timer = self.engine.clock.callLater(
                self.engine.options.upgrade_timeout, self._upgrade_timed_out
            )
            return
        peer = self.transport.getPeer()
        self.session = self.engine.open(self, getattr(peer, "host", str(peer)), upgrades=[])

    def message_received(self, message: Message) -> None:
        try:
            session = self.session
            if session is not None and message[:1] == eio.MESSAGE and type(message) is str:
                # The common case, without a Packet: what session.receive_message does.
                listener = session.listener
                if listener is not None:
                    listener.on_message(message[1:])
                return
            received = eio.decode(message)
            if session is not None:
                session.receive(received)
            elif self._probing is not None:
                self._probe_packet(received)
        except eio.PacketError:
            self.message_invalid(1008, "invalid Engine.IO packet")
        except Exception:
            self._log.failure("WebSocket message handling failed")
            self.message_invalid(1011, "internal error")

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self._cancel_upgrade_timer()
        probing, self._probing = self._probing, None
        if probing is not None:
            probing.upgrading = False
        session = self.session
        if session is not None:
            # A page that was closed or left says so (1001); a network that
            # went away says nothing: only the latter may resume.
            session.transport_lost(self, CLIENT_GONE if code == GOING_AWAY else TRANSPORT_CLOSE)

    # -- the session's transport interface ---------------------------------

    def send(self, packets: list[Packet]) -> None:
        self.send_messages(
            (data, True) if isinstance(data, bytes) else ((kind + data).encode("utf-8"), False)
            for kind, data in packets
        )

    def send_text(self, message: bytes) -> None:
        # send_frame(_MESSAGE, message), for the one write nearly every message takes.
        if self.state == _OPEN:
            self.sendData(b"".join((frame_header(len(message) + 1, False), _MESSAGE, message)))

    def close(self, notify: bool = True) -> None:
        self.sendClose(1000)

    def _not_reading(self) -> None:
        """More than maxBufferedBytes wait for this client: drop it and its buffer now."""
        session = self.session
        self._log.info(
            "dropping {sid}: the client does not read what is sent to it",
            sid=session.sid if session is not None else "(probe)",
        )
        if session is not None:
            session.transport_lost(self, TRANSPORT_ERROR)
        self.transport.abortConnection()

    # -- upgrade -----------------------------------------------------------

    def _probe_packet(self, received: Packet) -> None:
        session = self._probing
        assert session is not None
        if session.closed:
            self.sendClose(1000)
        elif received.type == eio.PING and received.data == PROBE:
            self.send_messages([((eio.PONG + PROBE).encode("ascii"), False)])
            session.transport.release()
        elif received.type == eio.UPGRADE:
            self._cancel_upgrade_timer()
            self._probing = None
            polling = session.transport
            pending = polling.take_queue()
            polling.release()
            self.session = session
            session.upgrade(self, pending)
        else:
            self.message_invalid(1008, "invalid Engine.IO packet")

    def _upgrade_timed_out(self) -> None:
        self._upgrade_timer = None
        self.sendClose(1000)

    def _cancel_upgrade_timer(self) -> None:
        timer, self._upgrade_timer = self._upgrade_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def message_invalid(self, code: int, reason: str) -> None:
        """Close this client only: 1008 bad packet, 1007 bad UTF-8, 1011 our bug."""
        session = self.session
        if session is not None:
            session.transport_lost(self, PARSE_ERROR)
        super().message_invalid(code, reason)


class EngineWebSocketFactory(WebSocketServerFactory):
    """Builds Engine.IO WebSocket protocols bound to one :class:`EngineServer`."""

    protocol = EngineWebSocketProtocol

    def __init__(self, engine: EngineServer) -> None:
        super().__init__()
        self.engine = engine
        self.write_batch = WriteBatch(engine.clock, engine.turns)
        self.setProtocolOptions(**protocol_options(engine.options.max_payload))

    def resetProtocolOptions(self) -> None:
        super().resetProtocolOptions()
        self._options_changed()

    def setProtocolOptions(self, **options: Any) -> None:
        super().setProtocolOptions(**options)
        self._options_changed()

    def _options_changed(self) -> None:
        """Give this factory's connections its options as class attributes: set once, not per connection."""
        base = EngineWebSocketFactory.protocol
        options = {
            # A function (perMessageCompressionAccept) must not become a method.
            name: staticmethod(value) if isinstance(value, FunctionType) else value
            for name, value in ((name, getattr(self, name)) for name in base.FACTORY_OPTIONS if name != "tcpNoDelay")
        }
        self.protocol = type(base.__name__, (base,), {"__module__": base.__module__, **options})
