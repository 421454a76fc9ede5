"""A connection's first request, read before Twisted Web sees it.

Most connections to the WebSocket port open a WebSocket at once: one
``GET /socket.io/?EIO=4&transport=websocket`` with a dozen header fields,
whole in the first read. Twisted Web's HTTP channel parsed it line by line
into a Request (a headers object, the arguments, an idle timer, a producer
registration) only for the WebSocket to take the connection from it again:
a fifth of what a short-lived connection cost. Here that first read is
checked by one regular expression and, when it is a complete and ordinary
GET, offered to an ``upgrade`` callable. Anything else (a head split over
reads, a body, a field out of the ordinary, long-polling, any refusal) goes
to the HTTP channel exactly as it came, so every other request is answered
as before.

Nothing here knows Engine.IO or WebSocket: the caller decides what a head
it can take looks like.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Optional

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Server as TCPServer
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPFactory

#: A head longer than this is left to Twisted Web and its limits.
MAX_HEAD = 8192

#: A GET in HTTP/1.1 with 1 to 64 header fields, each ``token: visible ASCII``
#: (no obsolete line folding, no bytes past 0x7e), nothing after the blank line.
_HEAD = re.compile(
    rb"GET (/[\x21-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n){1,64})"
    rb"\r\n"
)

#: Fields that announce a body: a request with one is not a plain GET.
_BODY_FIELDS = (b"content-length", b"transfer-encoding")


class Head(NamedTuple):
    """A plain GET's request line and header fields."""

    path: bytes
    query: bytes
    #: Lower-case field name -> its values, in order, stripped as Twisted Web strips them.
    fields: dict[bytes, list[bytes]]
    #: The request target as sent (path and query).
    uri: bytes


def read_head(data: bytes) -> Optional[Head]:
    """``data`` as a plain, complete GET head, or None for anything else."""
    if len(data) > MAX_HEAD:
        return None
    match = _HEAD.fullmatch(data)
    if match is None:
        return None
    uri, block = match.groups()
    fields: dict[bytes, list[bytes]] = {}
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        fields.setdefault(name.lower(), []).append(value.strip(b" \t"))
    for name in _BODY_FIELDS:
        if name in fields:
            return None
    path, _, query = uri.partition(b"?")
    return Head(path, query, fields, uri)


def take_over(connection: Any, protocol: IProtocol) -> None:
    """Make ``protocol`` the protocol of ``connection``, however TLS is layered.

    Twisted has no public way to do this for a connection already served.
    """
    if isinstance(connection, ProtocolWrapper):
        # TLS as a protocol layer (TLSMemoryBIOFactory): the connection is that layer.
        connection.wrappedProtocol = protocol
    elif isinstance(connection.protocol, ProtocolWrapper):
        # TLS started on the TCP connection itself (listenSSL): its layer sits in between.
        connection.protocol.wrappedProtocol = protocol
    else:
        connection.protocol = protocol
    protocol.makeConnection(connection)


#: What an upgrade is: given a plain head and the connection it came on,
#: serve the connection (True) or leave it to HTTP (False).
Upgrade = Callable[[Head, Any], bool]


class FirstRequest(Protocol):
    """Holds a new connection until its first read, then hands it on."""

    def __init__(self, factory: "FirstRequestFactory") -> None:
        self._factory = factory
        self._idle: Any = None

    def connectionMade(self) -> None:
        transport = self.transport
        if type(transport) is TCPServer:
            # The attributes an HTTP channel gives a connection first (it
            # registers itself as its producer), in that order, on every
            # connection. CPython shares one key table among a class's
            # instance dicts as long as they get their attributes in the
            # order the first instances did (PEP 412); a port probe that
            # closes before sending anything, often the first, would otherwise
            # set that order, and every open WebSocket's connection would hold
            # a dict of its own: 0.6 KB more per idle client.
            transport.producer = None
            transport.streamingProducer = False
        # The HTTP channel's idle timeout, until there is one.
        self._idle = self._factory.clock.callLater(self._factory.site.timeOut, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        self._stop_idle()
        connection = self.transport
        head = read_head(data)
        if head is not None and self._factory.upgrade(head, connection):
            return
        channel = self._factory.site.buildProtocol(connection.getPeer())
        take_over(connection, channel)
        channel.dataReceived(data)

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_idle()

    def _stop_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and idle.active():
            idle.cancel()

    def _timed_out(self) -> None:
        self._idle = None
        self.transport.abortConnection()


class FirstRequestFactory(Factory):
    """Serves a port as ``site`` does, the connections ``upgrade`` takes aside."""

    noisy = False

    def __init__(self, site: HTTPFactory, upgrade: Upgrade, clock: Any) -> None:
        self.site = site
        self.upgrade = upgrade
        self.clock = clock

    def buildProtocol(self, addr: Any) -> FirstRequest:
        return FirstRequest(self)

    def logPrefix(self) -> str:
        return self.site.logPrefix()

    def doStart(self) -> None:
        self.site.doStart()

    def doStop(self) -> None:
        self.site.doStop()
