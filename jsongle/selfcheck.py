"""A real end-to-end self-check of the running server (``GET /tests``).

It connects like a client would: an Autobahn WebSocket straight to the
Engine.IO endpoint, a Socket.IO CONNECT with the app token, the JSONgle
``session-hello`` handshake, then closes.  Each step reached is worth a share
of the score, so a partial failure says how far the server got.

With ``useHTTPS`` the check connects over TLS *without verifying* the
certificate: it talks to this very process (often with a self-signed
certificate), so verification would prove nothing about the server.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, NamedTuple, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.logger import Logger

log = Logger()

PATH = "/socket.io/?EIO=4&transport=websocket"
STEPS = ("websocket open", "engine.io open", "socket.io connect", "session-hello", "hello ack")


class CheckResult(NamedTuple):
    score: int
    reason: Optional[str]


class _Check:
    """One check run: step counter, result Deferred, timeout."""

    def __init__(self, auth: dict[str, Any]) -> None:
        self.auth = auth
        self.step = 0
        self.done: Deferred[CheckResult] = Deferred()
        self.protocol: Optional[_CheckProtocol] = None

    def score(self) -> int:
        return self.step * 100 // len(STEPS)

    def finish(self, reason: Optional[str]) -> None:
        if self.done.called:
            return
        if reason is not None:
            reason = f"{reason} (after step {self.step}/{len(STEPS)}: " \
                     f"{STEPS[self.step - 1] if self.step else 'nothing'})"
        self.done.callback(CheckResult(self.score() if reason is None else min(self.score(), 99), reason))
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection() if reason else self.protocol.sendClose()


class _CheckProtocol(WebSocketClientProtocol):
    check: _Check

    def onOpen(self) -> None:
        self.check.protocol = self
        self.check.step = 1

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            self._message(payload.decode("utf-8"))
        except Exception as error:  # Autobahn would swallow it
            log.failure("self-check: unexpected error")
            self.check.finish(f"unexpected error: {error!r}")

    def _send(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def _message(self, text: str) -> None:
        check = self.check
        if text == "2":  # Engine.IO ping
            self._send("3")
            return
        if check.step == 1:
            if not text.startswith("0"):
                return check.finish(f"expected an Engine.IO open packet, got {text[:80]!r}")
            check.step = 2
            self._send("40" + json.dumps(check.auth))
        elif check.step == 2:
            if text.startswith("44"):
                return check.finish(f"Socket.IO CONNECT refused: {text[2:200]}")
            if not text.startswith("40"):
                return check.finish(f"expected a Socket.IO CONNECT reply, got {text[:80]!r}")
            self.sid = json.loads(text[2:])["sid"]
            check.step = 3
        elif check.step == 3:
            message = self._jsongle(text)
            body = message.get("jsongle", {})
            if body.get("action") != "iq-get" or body.get("query") != "session-hello":
                return check.finish(f"expected a session-hello iq-get, got {text[:120]!r}")
            check.step = 4
            self.transaction = body.get("transaction")
            answer = {
                "id": str(uuid.uuid4()),
                "from": self.sid,
                "to": message.get("from"),
                "jsongle": {
                    "action": "iq-result",
                    "query": "session-hello",
                    "transaction": self.transaction,
                    "description": {"uid": "selfcheck", "dn": "self-check"},
                },
            }
            self._send("42" + json.dumps(["jsongle", answer]))
        elif check.step == 4:
            body = self._jsongle(text).get("jsongle", {})
            if body.get("action") != "ack" or body.get("transaction") != self.transaction:
                return check.finish(f"expected the hello ack, got {text[:120]!r}")
            if body.get("status") != "success":
                return check.finish(f"hello ack status {body.get('status')!r}")
            check.step = 5
            check.finish(None)

    def _jsongle(self, text: str) -> dict[str, Any]:
        if not text.startswith("42"):
            raise ValueError(f"expected a Socket.IO event, got {text[:80]!r}")
        event = json.loads(text[2:])
        if not isinstance(event, list) or len(event) < 2 or event[0] != "jsongle":
            raise ValueError(f"expected a jsongle event, got {text[:80]!r}")
        return event[1]

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.check.finish(f"connection closed ({code}: {reason})")


class _CheckFactory(WebSocketClientFactory):
    protocol = _CheckProtocol
    noisy = False

    def __init__(self, check: _Check, url: str) -> None:
        super().__init__(url)
        self.check = check

    def buildProtocol(self, addr: Any) -> _CheckProtocol:
        protocol = super().buildProtocol(addr)
        protocol.check = self.check
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.check.finish(f"cannot connect: {reason.getErrorMessage()}")

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        self.check.finish(f"connection lost: {reason.getErrorMessage()}")


class SelfCheck:
    """Callable: ``check() -> Deferred[CheckResult]``; never errbacks.

    ``reactor`` connects and times out (``IReactorTCP``, ``IReactorSSL``,
    ``IReactorTime``); ``ws_port`` gives the *bound* WebSocket port at call
    time (``None`` when not listening).
    """

    def __init__(
        self,
        reactor: Any,
        ws_port: Callable[[], Optional[int]],
        host: str,
        app_token: str,
        use_tls: bool,
        timeout: float = 5.0,
        self_check: str = "",
    ) -> None:
        self.reactor = reactor
        self.ws_port = ws_port
        self.host = host if host not in ("", "0.0.0.0") else "127.0.0.1"
        self.app_token = app_token
        #: With per-user tokens the check has no user: it shows this process's random secret instead.
        self.self_check = self_check
        self.use_tls = use_tls
        self.timeout = timeout

    def __call__(self) -> Deferred[CheckResult]:
        auth = {"appToken": self.app_token}
        if self.self_check:
            auth["selfCheck"] = self.self_check
        check = _Check(auth)
        port = self.ws_port()
        if port is None:
            check.finish("the WebSocket port is not listening")
            return check.done
        scheme = "wss" if self.use_tls else "ws"
        factory = _CheckFactory(check, f"{scheme}://{self.host}:{port}{PATH}")
        if self.use_tls:
            connector = self.reactor.connectSSL(self.host, port, factory, ssl.CertificateOptions(verify=False),
                                                timeout=self.timeout)
        else:
            connector = self.reactor.connectTCP(self.host, port, factory, timeout=self.timeout)
        timer = self.reactor.callLater(self.timeout, check.finish, f"timed out after {self.timeout}s")

        def cleanup(result: CheckResult) -> CheckResult:
            if timer.active():
                timer.cancel()
            if result.reason is not None and check.protocol is None:
                connector.disconnect()
            return result

        return check.done.addCallback(cleanup)
