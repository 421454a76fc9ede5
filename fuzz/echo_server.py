"""A WebSocket echo endpoint on jsongle's own WebSocket stack, for fuzzing.

It serves the frame layer the daemon uses (same protocol base class, same
factory options, the same opening handshake behind a Twisted Web ``Site``, as
in production) and echoes every message back, so the Autobahn test suite can
judge the framing alone.
Prints ``echo listening on <host>:<port>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from jsongle.engineio.wsframes import FastFrameProtocol, Message, WriteBatch, protocol_options
from jsongle.engineio.wshandshake import HandshakeRefused, check_opening_handshake, hand_over


class EchoProtocol(FastFrameProtocol):
    """Sends each message back as it came (text or binary)."""

    def message_received(self, message: Message) -> None:
        if isinstance(message, bytes):
            self.send_messages([(message, True)])
        else:
            self.send_messages([(message.encode("utf-8"), False)])


class EchoResource(Resource):
    """Answers the opening handshake as the daemon's resource does, for every path."""

    isLeaf = True

    def __init__(self, factory: WebSocketServerFactory) -> None:
        super().__init__()
        self.factory = factory

    def render(self, request: Request) -> object:
        try:
            accept = check_opening_handshake(request)
        except HandshakeRefused as refused:
            request.setResponseCode(refused.status)
            for name, value in refused.headers:
                request.setHeader(name, value)
            return refused.reason.encode("utf-8")
        protocol = self.factory.buildProtocol(request.getClientAddress())
        hand_over(request, protocol)
        protocol.open_upgraded(accept)
        return NOT_DONE_YET


def echo_site(max_payload: int, clock: Any) -> Site:
    factory = WebSocketServerFactory()
    factory.protocol = EchoProtocol
    factory.write_batch = WriteBatch(clock)
    factory.setProtocolOptions(**protocol_options(max_payload))
    site = Site(EchoResource(factory))
    site.noisy = False
    return site


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-payload", type=int, default=64 * 1024 * 1024)
    args = parser.parse_args(argv)
    port = reactor.listenTCP(args.port, echo_site(args.max_payload, reactor), interface=args.host)
    address = port.getHost()
    print(f"echo listening on {address.host}:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
