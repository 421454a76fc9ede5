"""An echo server for the public Engine.IO and Socket.IO protocol test suites.

The official conformance suites (the ``test-suite/`` directories of the
socketio/engine.io-protocol and socketio/socket.io-protocol repositories)
expect a server on http://localhost:3000 running a small echo application,
described in each repository's README.  This script is that application,
built only on jsongle's transport layers (no JSONgle code):

* ``/engine.io/``: a bare Engine.IO server that sends every message back
  unchanged (text stays text, binary stays binary);
* ``/socket.io/``: Socket.IO with two namespaces.  ``/`` and ``/custom`` both
  emit ``auth`` with the CONNECT payload; ``/`` also answers ``message`` with
  ``message-back`` (same arguments) and acknowledges ``message-with-ack``
  with its own arguments.  Binary arguments stay binary.

Both use pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000,
Socket.IO a connectTimeout of 1000 ms, and CORS open to any origin (the
suites' ``cors: {origin: "*"}``, for their browser mode), as the suites'
READMEs require.

Usage, from the repository root::

    PYTHONPATH=. python examples/protocol_echo.py            # port 3000
    PYTHONPATH=. python examples/protocol_echo.py --port 0   # a free port

then, in a checkout of either protocol repository (the suites hard-code
http://localhost:3000, so keep the default port)::

    cd test-suite && npm ci && npm test

or, in headless Chromium, ``tests/protocol_suites/run.py`` (see the README).

The server listens on 127.0.0.1 only and prints
``listening on 127.0.0.1:PORT`` once it is ready.  Stop it with Ctrl-C.

With the suites' pinned ``ws`` client, a few Socket.IO tests can miss the
``auth`` event when it arrives in the same TCP read as the CONNECT reply (a
client-side race that also affects the reference server); a browser-like
client does not.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Optional

from twisted.internet import reactor
from twisted.web.resource import Resource
from zope.interface import implementer

from jsongle.engineio.resource import engineio_site
from jsongle.engineio.server import EngineOptions, EngineServer
from jsongle.engineio.session import EngineSession
from jsongle.interfaces import ISocketApplication
from jsongle.randompool import RandomPool, SessionIds
from jsongle.socketio.server import Connection, SocketIOServer

#: The suites run in a browser from a page of another origin: ``cors: {origin: "*"}``.
OPTIONS = EngineOptions(ping_interval=300, ping_timeout=200, max_payload=1000000, cors_origins=("*",))
CONNECT_TIMEOUT_SECONDS = 1.0


# -- /engine.io/: echo every Engine.IO message ------------------------------


class EngineEcho:
    """The listener of one Engine.IO session: what arrives goes back."""

    def __init__(self, session: EngineSession) -> None:
        self.session = session

    def on_message(self, data: Any) -> None:
        self.session.send(data)

    def on_pong(self) -> None:
        """Nothing kept to let go of."""

    def on_close(self, reason: str) -> None:
        pass


def attach_engine_echo(session: EngineSession) -> None:
    session.listener = EngineEcho(session)


# -- /socket.io/: the namespaces --------------------------------------------


@implementer(ISocketApplication)
class AuthEcho:
    """Namespace ``/custom``: only tells the client its CONNECT payload."""

    event_name = "message"

    def connect(self, connection: Connection, auth: dict) -> None:
        connection.emit("auth", auth)

    def event(self, connection: Connection, name: str, args: list, ack: Optional[Callable[..., None]]) -> None:
        pass

    def disconnect(self, connection: Connection, reason: str) -> None:
        pass

    def away(self, connection: Connection, reason: str) -> None:
        pass  # never called: this server is built without connection state recovery

    def resume(self, connection: Connection, remote: str, auth: dict) -> None:
        pass


@implementer(ISocketApplication)
class MessageEcho(AuthEcho):
    """Namespace ``/``: also echoes ``message`` and ``message-with-ack``."""

    def event(self, connection: Connection, name: str, args: list, ack: Optional[Callable[..., None]]) -> None:
        if name == "message":
            connection.emit("message-back", *args)
        elif name == "message-with-ack" and ack is not None:
            ack(*args)


# -- wiring -----------------------------------------------------------------


def build_site() -> Any:
    """One Site: Socket.IO under /socket.io/, the bare echo under /engine.io/."""
    ids = SessionIds(RandomPool())
    socketio = SocketIOServer(
        {"/": MessageEcho(), "/custom": AuthEcho()}, reactor, CONNECT_TIMEOUT_SECONDS, ids, lambda reason, namespace: None
    )
    socketio_engine = EngineServer(OPTIONS, reactor, socketio.on_engine_open, ids)
    echo_engine = EngineServer(OPTIONS, reactor, attach_engine_echo, ids)

    site = engineio_site(socketio_engine, paths=(b"socket.io",))
    echo_root: Resource = engineio_site(echo_engine, paths=(b"engine.io",)).site.resource
    # WebSocket opens under /engine.io/ take the HTTP channel's way: the
    # first-read check knows only the paths of the engine it was built for.
    site.site.resource.putChild(b"engine.io", echo_root.getStaticEntity(b"engine.io"))
    return site


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Echo server for the Engine.IO / Socket.IO protocol test suites.")
    parser.add_argument("--port", type=int, default=3000, help="TCP port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    port = reactor.listenTCP(args.port, build_site(), interface="127.0.0.1")
    address = port.getHost()
    print(f"listening on {address.host}:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
