"""A listening endpoint with SO_REUSEPORT: several processes, one port.

The kernel spreads new connections over the processes listening on the
port.  Each TCP connection may land on another process, so only clients
that keep one connection (WebSocket only) can use it; long-polling needs a
proxy with sticky sessions instead.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """Like TCP4ServerEndpoint, with SO_REUSEPORT set before bind()."""

    def __init__(self, reactor: Any, port: int, interface: str = "", backlog: int = 128) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, factory: Any) -> Deferred:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface or "0.0.0.0", self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
            port = self.reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
        except Exception as error:  # a bind error must stop the start, as with TCP4ServerEndpoint
            return fail(error)
        finally:
            # adoptStreamPort duplicated the descriptor.
            sock.close()
        return succeed(port)
