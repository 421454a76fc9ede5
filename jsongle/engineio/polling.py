"""The HTTP long-polling transport of Engine.IO v4.

One pending GET per session carries what the server has queued; each POST
carries packets from the client.  Requests arrive through
:class:`jsongle.engineio.resource.EngineIOResource`.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from jsongle.engineio import packet as eio
from jsongle.engineio.packet import Packet
from jsongle.engineio.session import PING_TIMEOUT, TRANSPORT_ERROR, EngineSession

TEXT_CONTENT_TYPE = b"text/plain; charset=UTF-8"


class PollingTransport:
    """Queues packets until the client's next GET picks them up."""

    name = "polling"
    #: Still serves its session once ended: the last GET fetches what was queued.
    lingers = True
    log = Logger()

    __slots__ = ("session", "_queue", "_queued_bytes", "_request", "_closing", "_close_next", "_linger", "_probed")

    def __init__(self) -> None:
        self.session: Optional[EngineSession] = None
        self._queue: list[Packet] = []
        #: About how many bytes ``_queue`` holds (bounded by maxBufferedBytes).
        self._queued_bytes = 0
        self._request: Optional[Request] = None
        self._closing = False
        #: The CLOSE waits for the response after the one carrying what was queued.
        self._close_next = False
        self._linger: Optional[IDelayedCall] = None
        self._probed = False

    # -- session side ------------------------------------------------------

    def send(self, packets: list[Packet]) -> None:
        self._queue.extend(packets)
        if self._request is not None:
            self._flush()
            return
        self._queued_bytes += sum(len(item.data) + 1 for item in packets)
        session = self.session
        if session is not None and not self._closing and self._queued_bytes > session.server.options.max_buffered_bytes:
            self._not_polling()

    def send_text(self, message: bytes) -> None:
        self.send([Packet(eio.MESSAGE, message.decode("utf-8"))])

    def _not_polling(self) -> None:
        """More than maxBufferedBytes wait for the next GET: end the session, free the queue."""
        self.log.info("dropping {sid}: the client does not fetch what is sent to it", sid=self._sid())
        self._queue = []
        self._queued_bytes = 0
        self.fail(TRANSPORT_ERROR)

    def close(self, notify: bool = True) -> None:
        """Deliver what is queued, then a CLOSE, now or on the next GETs.

        The CLOSE goes in a response of its own after the queued packets (as
        engine.io does): socket.io-client handles the messages of a response
        a tick after its packets are read, and once it has read a CLOSE it
        drops them, so a 429001 and the DISCONNECT sent with a CLOSE would
        never be seen.

        Without ``notify`` (the client asked to close) a pending GET is only
        released with a NOOP; so is a GET that races the client's close POST
        (sent "at the same time", it may arrive just after it).
        """
        if self._closing:
            return
        self._closing = True
        if not notify:
            if self._request is not None:
                self.release()
                self._forget()
            else:
                self._queue = [Packet(eio.NOOP)]
                self._linger_briefly()
            return
        if self._queue:
            self._close_next = True
        else:
            self._queue.append(Packet(eio.CLOSE))
        if self._request is not None:
            self._flush()
        else:
            # Keep the session reachable for one last GET, briefly, unless
            # the client stopped answering pings: then, like engine.io, its
            # sid is unknown at once (the next GET gets a 400).
            session = self.session
            if session is not None and session.close_reason == PING_TIMEOUT:
                self._forget()
            else:
                self._linger_briefly()

    def _linger_briefly(self) -> None:
        """Keep a closed session findable until one more GET, or pingTimeout."""
        session = self.session
        if session is not None:
            server = session.server
            server.retain(session)
            self._linger = server.clock.callLater(
                server.options.ping_timeout / 1000.0, self._forget
            )

    def release(self) -> None:
        """Answer a pending GET with a NOOP (the client is upgrading).

        Once the probe is answered, later GETs get a NOOP at once too, until
        the upgrade ends either way (engine.io does it within 100 ms).
        """
        self._probed = True
        if self._request is not None:
            if not self._queue:
                self._queue.append(Packet(eio.NOOP))
            self._flush()

    def take_queue(self) -> list[Packet]:
        """Hand over what is still queued (the session moves to WebSocket)."""
        queue, self._queue = self._queue, []
        self._queued_bytes = 0
        return queue

    @property
    def has_queued(self) -> bool:
        return bool(self._queue)

    # -- HTTP side ---------------------------------------------------------

    def handle_get(self, request: Request) -> object:
        """A long-poll GET: answer now if something is queued, else hold it."""
        if self._request is not None:
            # Two GETs at once: the client is broken.  The first GET gets a
            # CLOSE, this one a 400 (from the caller), and the session ends.
            self.log.info("polling GET overlap on {sid}", sid=self._sid())
            self._closing = True
            self._queue.append(Packet(eio.CLOSE))
            self._flush()
            session = self.session
            if session is not None:
                session.transport_lost(self, TRANSPORT_ERROR)
            return None
        request.setHeader(b"content-type", TEXT_CONTENT_TYPE)
        self._request = request
        request.notifyFinish().addErrback(self._request_lost, request)
        session = self.session
        if self._probed and session is not None and session.upgrading:
            self.release()
        elif self._queue:
            self._flush()
        return NOT_DONE_YET

    def handle_post(self, body: bytes) -> None:
        """A POST of packets from the client; raises PacketError on garbage."""
        session = self.session
        if session is None or session.closed:
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise eio.PacketError("payload is not UTF-8") from exc
        for received in eio.decode_payload(text):
            if session.closed:
                break
            session.receive(received)

    # -- internals ---------------------------------------------------------

    def _flush(self) -> None:
        request, self._request = self._request, None
        queue, self._queue = self._queue, []
        self._queued_bytes = 0
        assert request is not None
        request.write(eio.encode_payload(queue).encode("utf-8"))
        request.finish()
        if self._close_next:
            self._close_next = False
            self._queue.append(Packet(eio.CLOSE))
            if self._linger is None:
                self._linger_briefly()
        elif self._closing:
            self._forget()

    def _request_lost(self, _failure: object, request: Request) -> None:
        if self._request is request:
            self._request = None

    def fail(self, reason: str = TRANSPORT_ERROR) -> None:
        """Bad input from the client: end the session, release any GET."""
        self._closing = True
        self.release()
        session = self.session
        if session is not None:
            session.transport_lost(self, reason)
        self._forget()

    def _forget(self) -> None:
        linger, self._linger = self._linger, None
        if linger is not None and linger.active():
            linger.cancel()
        session = self.session
        if session is not None:
            session.server.forget(session)

    def _sid(self) -> str:
        return self.session.sid if self.session is not None else "?"

