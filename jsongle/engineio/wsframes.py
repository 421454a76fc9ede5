"""WebSocket frames of the common case, read and written without Autobahn's machinery.

Once a WebSocket is open, nearly every frame a client sends is one small,
unfragmented, masked text (or binary) frame, and every frame we send is an
unmasked text or binary message. :class:`FastFrameProtocol` reads exactly
those frames straight from the bytes received and writes its own frames, one
``transport.write`` per batch. Everything else (control frames, fragments,
reserved bits or opcodes, unmasked client frames, 64-bit lengths, lengths not
minimally encoded, frames over the size limit, a connection that is not simply
open) goes, together with all the bytes after it, to Autobahn's own parser,
which applies RFC 6455 to the letter. The fast path therefore accepts nothing
Autobahn would refuse; it only skips the work that does not serve.
"""

from __future__ import annotations

import struct
from collections import deque
from functools import cached_property
from typing import Any, Callable, Iterable, Optional, Union

import txaio
from autobahn.twisted.util import create_transport_details, peer2str
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import _is_tls_error, _maybe_tls_reason
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import Timings, TrafficStats, WebSocketProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.interfaces import IReactorTime
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import connectionDone
from twisted.internet.tcp import Server as TCPServer
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsongle.engineio.pollturns import PollTurns

#: FIN set, no reserved bits, text / binary opcode: the only first bytes taken.
TEXT_FRAME = 0x81
BINARY_FRAME = 0x82
MASKED = 0x80

#: What :func:`next_frame` finds at an offset besides a whole frame.
NEED_MORE = "need more"
NOT_SIMPLE = "not simple"

#: Invalid UTF-8 in a text message (RFC 6455, 7.4.1).
INVALID_PAYLOAD = 1007

_OPEN = WebSocketProtocol.STATE_OPEN
#: The extensions in use once open: none (shared, never appended to once open).
_NO_EXTENSIONS: tuple[()] = ()

#: The answer to an opening handshake, up to the ``Sec-WebSocket-Accept`` value.
_SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)

Message = Union[str, bytes]


def _unmask_with_integers(mask: bytes, payload: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte client ``mask`` (as one big integer: C speed, no loop)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _unmask_with_speedups() -> Optional[Callable[[bytes, bytes], bytes]]:
    """The ``websockets`` package's C masking, ten to fifty times faster, if installed."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover - a build without its C extension
        return None

    def unmask(mask: bytes, payload: bytes) -> bytes:
        return apply_mask(payload, mask)

    return unmask


#: ``unmask(mask, payload)``: every client frame's payload goes through it once.
unmask: Callable[[bytes, bytes], bytes] = _unmask_with_speedups() or _unmask_with_integers


def next_frame(data: bytes, offset: int, limit: int) -> tuple[Union[bool, str], bytes, int]:
    """Read the frame of ``data`` starting at ``offset`` if it is a simple one.

    Returns ``(is_binary, payload, end)`` for a complete, final, masked text or
    binary frame of at most ``limit`` bytes (``0``: no limit) with a minimal
    7- or 16-bit length; ``(NEED_MORE, b"", offset)`` when the bytes so far
    start such a frame but do not hold all of it; ``(NOT_SIMPLE, b"", offset)``
    for anything else.
    """
    available = len(data) - offset
    if available < 2:
        return NEED_MORE, b"", offset
    first = data[offset]
    if first != TEXT_FRAME and first != BINARY_FRAME:
        return NOT_SIMPLE, b"", offset
    second = data[offset + 1]
    if not second & MASKED:
        return NOT_SIMPLE, b"", offset
    length = second & 0x7F
    if length < 126:
        header = 6
    elif length == 126:
        if available < 4:
            return NEED_MORE, b"", offset
        length = (data[offset + 2] << 8) | data[offset + 3]
        if length < 126:
            return NOT_SIMPLE, b"", offset
        header = 8
    else:
        return NOT_SIMPLE, b"", offset
    if limit and length > limit:
        return NOT_SIMPLE, b"", offset
    end = offset + header + length
    if available < header + length:
        return NEED_MORE, b"", offset
    start = offset + header
    return first == BINARY_FRAME, unmask(data[start - 4 : start], data[start:end]), end


def _nothing_queued(transport: Any) -> bool:
    """An open TCP connection with nothing in Twisted's write buffer."""
    return (
        type(transport) is TCPServer
        and transport.connected
        and not transport._writeDisconnected
        and not transport._aborting
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    )


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a TCP transport at once when nothing is queued.

    ``transport.write`` only queues: the bytes leave on the reactor's next
    turn, after registering the socket for writability with epoll and before
    unregistering it again, three system calls and a loop turn per reply.
    When the transport's buffer is empty the socket usually takes everything
    right away, so try that first; whatever it does not take (a full socket
    buffer, an error) goes through ``transport.write`` as before, so order,
    back-pressure (``pauseProducing``) and error handling stay Twisted's.
    Other transports (TLS) are written to as usual.
    """
    if _nothing_queued(transport):
        # The socket itself, not writeSomeData: no memoryview and no EINTR
        # loop around it (Python retries EINTR itself).
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # full, or broken: transport.write finds out as Twisted does
        if sent:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def close_written(transport: Any) -> None:
    """Close a connection whose last bytes were just written.

    ``transport.loseConnection`` waits for the reactor to say the socket is
    writable even when nothing is left to write: two epoll changes, a poll,
    a ``send`` of nothing, then ``shutdown`` and ``close``. When the socket
    took everything, the connection is closed here as the reactor would close
    it then (Twisted's own ``loseConnection`` does so after a half-close),
    without the ``shutdown``: the socket is this process's alone (it is
    opened close-on-exec), so ``close`` sends the FIN. Otherwise, and for
    other transports, ``loseConnection`` as usual.
    """
    if _nothing_queued(transport) and not transport.disconnecting:
        transport._shouldShutdown = False
        transport.connectionLost(Failure(ConnectionDone()))
    else:
        transport.loseConnection()


class WriteBatch:
    """Frames written during one reactor turn, sent together right after it.

    One per factory, shared by its connections. ``transport.write`` holds
    bytes until the reactor's next turn too, but gets there by registering the
    socket with epoll for writability, waiting for the poll to say so, and
    unregistering it: three system calls and a poll per connection written
    to. Held here, every connection's frames of the turn (a relay, its ack,
    the copies of several reads) leave in one ``send`` each as soon as the
    turn's reads are handled, through :func:`write_now`: at the end of the
    poll's events when ``turns`` (the reactor's :class:`PollTurns`) is
    handling them, otherwise (a timer wrote) by a ``callLater(0)``, which runs
    before the next poll.
    """

    __slots__ = ("clock", "turns", "dirty", "_scheduled")

    def __init__(self, clock: IReactorTime, turns: Optional[PollTurns] = None) -> None:
        self.clock = clock
        self.turns = turns
        #: Connections holding frames, in the order they got their first.
        self.dirty: list["FastFrameProtocol"] = []
        self._scheduled = False

    def hold(self, protocol: "FastFrameProtocol") -> None:
        """``protocol`` has its first frame of this turn: send it with the rest."""
        self.dirty.append(protocol)
        if not self._scheduled:
            self._scheduled = True
            turns = self.turns
            if turns is not None and turns.dispatching:
                turns.after_events(self.flush)
            else:
                self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self.dirty = self.dirty, []
        for protocol in dirty:
            protocol.flush_held()


def frame_header(length: int, is_binary: bool) -> bytes:
    """The header of one final, unmasked server frame of ``length`` payload bytes."""
    first = BINARY_FRAME if is_binary else TEXT_FRAME
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return _HEADER_16(first, 126, length)
    return _HEADER_64(first, 127, length)


_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def protocol_options(max_payload: int) -> dict[str, Any]:
    """Autobahn factory options for a :class:`FastFrameProtocol` server.

    ``failByDrop=False``: a failed connection gets a Close frame with its code
    (1002, 1007, 1009, ...) after what was already written, instead of a TCP
    abort that would also throw those writes away. Autobahn's incoming UTF-8
    check stays on: it only runs on the frames Autobahn parses (fragmented
    messages fail as soon as their text is invalid); the fast path decodes
    text once, and invalid text there is a 1007 as well.
    """
    return {
        "maxFramePayloadSize": max_payload,
        "maxMessagePayloadSize": max_payload,
        "openHandshakeTimeout": 0,
        "closeHandshakeTimeout": 2,
        "autoPingInterval": 0,
        "failByDrop": False,
    }


class FastFrameProtocol(WebSocketServerProtocol):
    """An Autobahn server protocol with a fast path for the frames of the common case.

    Subclasses get each message once, as ``str`` (valid UTF-8 text) or
    ``bytes`` (binary), in :meth:`message_received`, whichever parser read it,
    and send with :meth:`send_messages`. Every byte written goes through
    :meth:`sendData`, the one send path.
    """

    # Autobahn reads tcpNoDelay before copying factory options; set it here.
    tcpNoDelay = True
    # Not ``log``: that name is Autobahn's txaio logger, which drops its many
    # debug calls cheaply; a Twisted Logger there would emit every one.
    _log = Logger()

    #: Bytes of a simple frame not yet complete; Autobahn sits at a frame boundary.
    _pending = b""
    #: The factory's :class:`WriteBatch` (``write_batch``), if it has one.
    _batch: Optional[WriteBatch] = None
    #: Frames held until the read under way has been handled.
    _held: Optional[list[bytes]] = None
    #: The connection is to be closed once the held frames are sent.
    _close_when_sent = False
    #: Counts what is written while the transport's buffer is full (``paused``,
    #: ``sent(size)``): :class:`jsongle.engineio.backpressure.OutgoingBudget`.
    _budget: Optional[Any] = None

    # -- per-connection state, kept small ------------------------------------
    #
    # Autobahn gives every connection two futures, an event table, transport
    # details (peer, pid, TLS channel id) and about thirty attributes set to
    # the same constants, and evaluates the arguments of its debug lines
    # (qualified names, colours) whatever the log level. Here the constants
    # are class attributes (a connection stores only what differs), the
    # objects are made on first use, which for most connections is never,
    # and the set-up skips what only served those debug lines.

    _perMessageCompress = None
    trackedTimings = None
    state = WebSocketProtocol.STATE_CONNECTING
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    data = b""
    #: Empty until Autobahn queues a write (``sync`` / ``chopsize``): see :meth:`sendData`.
    send_queue: Any = ()
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason = None
    wasServerConnectionDropTimeout = False
    wasOpenHandshakeTimeout = False
    wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode = None
    localCloseReason = None
    remoteCloseCode = None
    remoteCloseReason = None
    openHandshakeTimeoutCall = None
    closeHandshakeTimeoutCall = None
    autoPingTimeoutCall = None
    autoPingPending = None
    autoPingPendingCall = None
    autoPingPendingSeq = 0
    autoPingPendingSent = None
    inside_message = False
    current_frame = None
    _valid_events = ("message",)

    def __init__(self) -> None:
        """Nothing made up front (Autobahn's ``__init__`` makes the futures,
        the event table and empty transport details: see the properties)."""

    #: Set by :meth:`open_upgraded`: ``is_open``, made later, is made resolved.
    _opened = False

    @cached_property
    def is_open(self) -> Any:
        future = txaio.create_future()
        if self._opened:
            txaio.resolve(future, None)
        return future

    @cached_property
    def is_closed(self) -> Any:
        return txaio.create_future()

    @cached_property
    def _results(self) -> dict[str, Any]:
        return {"message": None}

    @cached_property
    def trafficStats(self) -> TrafficStats:
        return TrafficStats()

    @cached_property
    def utf8validator(self) -> Utf8Validator:
        """Only Autobahn's parser uses it (the fast path decodes text itself)."""
        return Utf8Validator()

    @cached_property
    def _transport_details(self) -> TransportDetails:
        details = create_transport_details(self.transport, self.is_server)
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        return details

    @cached_property
    def peer(self) -> str:
        """``tcp4:<host>:<port>``, as Autobahn names the peer (its log lines)."""
        return peer2str(self.transport)

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # not TCP (a Unix socket, a test transport)
            pass
        self._connectionMade()

    def _connectionMade(self) -> None:
        """What Autobahn's ``WebSocketProtocol._connectionMade`` and its server
        subclass do, less what the class attributes above already say."""
        self._batch = getattr(self.factory, "write_batch", None)
        factory = self.factory
        for name in self.CONFIG_ATTRS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        if self.trackTimings:
            self.trackedTimings = Timings()
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout
            )
        factory.countConnections += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Autobahn's, less its four debug lines (it works out their arguments,
        # the peer and qualified names, whatever the level); a TLS failure is
        # still logged as an error.
        if _is_tls_error(reason.value):
            self.log.error(_maybe_tls_reason(reason.value))
        self._connectionLost(reason)

    def _connectionLost(self, reason: Any) -> None:
        # The server subclass's, without the debug line's arguments.
        WebSocketProtocol._connectionLost(self, reason)
        self.factory.countConnections -= 1

    def _onOpen(self) -> None:
        # Autobahn's looks up the TLS channel id for its transport details first.
        self.onOpen()

    def open_upgraded(self, accept: bytes) -> None:
        """Answer an opening handshake someone else checked, and open.

        ``accept`` is the ``Sec-WebSocket-Accept`` value
        (:mod:`jsongle.engineio.wshandshake` checks the request and computes
        it). The protocol is left as Autobahn's ``succeedHandshake`` leaves it
        for a server that accepts no subprotocol and no extension (we offer
        no permessage-deflate), so its close handshake, control frames and
        parser work as usual; Autobahn's automatic pings are not started
        (:func:`protocol_options` turns them off).
        """
        self.sendData(_SWITCHING_PROTOCOLS + accept + b"\r\n\r\n")
        self.websocket_version = 13
        self.websocket_protocol_in_use = None
        self.websocket_extensions_in_use = _NO_EXTENSIONS
        self.state = _OPEN
        timer = self.openHandshakeTimeoutCall
        if timer is not None:
            self.openHandshakeTimeoutCall = None
            timer.cancel()
        # inside_message and current_frame: their class values (no frame yet).
        try:
            self._onOpen()
        except Exception:
            self._log.failure("opening a WebSocket failed")
            self._fail_connection(1011, "internal error")
        self._opened = True
        if "is_open" in self.__dict__:  # someone waits for it
            txaio.resolve(self.is_open, None)

    # -- for subclasses --------------------------------------------------------

    def message_received(self, message: Message) -> None:
        """One whole message: ``str`` for text, ``bytes`` for binary."""

    def message_invalid(self, code: int, reason: str) -> None:
        """Fail this connection only, with a close ``code`` (1007 bad UTF-8, ...).

        ``sendClose()`` only takes 1000 and 3000-4999; protocol codes go this way.
        """
        self._fail_connection(code, reason)

    def send_messages(self, messages: Iterable[tuple[bytes, bool]]) -> None:
        """Send ``(payload, is_binary)`` messages, all in one write.

        Nothing is sent once the WebSocket is closing: RFC 6455 allows no data
        after a Close frame.
        """
        if self.state != _OPEN:
            return
        parts = []
        for payload, is_binary in messages:
            parts.append(frame_header(len(payload), is_binary))
            parts.append(payload)
        if parts:
            self.sendData(b"".join(parts))

    def send_frame(self, *parts: bytes, is_binary: bool = False) -> None:
        """Send one message made of ``parts`` (what :meth:`send_messages` does,
        for the common case of one, without joining the parts first)."""
        if self.state == _OPEN:
            size = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
            self.sendData(b"".join((frame_header(size, is_binary), *parts)))

    # -- receiving -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        pending = self._pending
        if pending:
            data = pending + data
            self._pending = b""
        if (
            self.state != _OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
        ):
            # Handshake, a frame or fragmented message under way, closing.
            self._dataReceived(data)
            return
        limit = self._limit
        if limit is None:
            limit = self._limit = self._frame_limit()
        offset = 0
        size = len(data)
        while offset < size:
            kind, payload, end = next_frame(data, offset, limit)
            if kind is NEED_MORE:
                self._pending = data[offset:] if offset else data
                return
            if kind is NOT_SIMPLE:
                break
            offset = end
            if kind:  # binary
                self.message_received(payload)
            else:  # what _deliver does, without a call per frame
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self.message_invalid(INVALID_PAYLOAD, "invalid UTF-8 in a text message")
                    break
                self.message_received(text)
            if self.state != _OPEN:
                break
        if offset < size:
            self._dataReceived(data[offset:] if offset else data)

    #: :meth:`_frame_limit`, worked out at the first frame (options are set by then).
    _limit: Optional[int] = None

    def _frame_limit(self) -> int:
        """The smallest non-zero of Autobahn's frame and message size limits."""
        frame, message = self.maxFramePayloadSize, self.maxMessagePayloadSize
        if frame and message:
            return min(frame, message)
        return frame or message

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Frames Autobahn parsed (fragmented messages, after a control frame, ...).
        self._deliver(payload, isBinary)

    def _deliver(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.message_received(payload)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.message_invalid(INVALID_PAYLOAD, "invalid UTF-8 in a text message")
            return
        self.message_received(text)

    # -- sending ---------------------------------------------------------------

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        """The one path every outgoing byte takes (frames, control frames, handshake)."""
        held = self._held
        if sync or chopsize or self.send_queue:
            # Autobahn's queued writes: keep their order.
            self.flush_held()
            if self.send_queue == ():
                self.send_queue = deque()
            super().sendData(data, sync, chopsize)
        elif held is not None:
            held.append(data)
        elif self._batch is not None and type(self.transport) is TCPServer:
            self._held = [data]
            self._batch.hold(self)
        else:
            self.transport.write(data)
        budget = self._budget
        if budget is not None and budget.paused:
            budget.sent(len(data))

    def flush_held(self) -> None:
        """Send the frames held for this turn now (and close, if that was asked meanwhile)."""
        held = self._held
        if held is None:
            return
        self._held = None
        transport = self.transport
        if transport is not None:
            write_now(transport, held[0] if len(held) == 1 else b"".join(held))
            if self._close_when_sent:
                self._close_when_sent = False
                close_written(transport)

    def _closeConnection(self, abort: bool = False) -> None:
        # Autobahn drops the connection once the close handshake is done, in
        # the same turn as the Close frame it answered with, still held: the
        # connection is closed as soon as that frame is sent.
        if not abort and self._held is not None:
            self._close_when_sent = True
            return
        super()._closeConnection(abort)
