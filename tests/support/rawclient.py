"""A bare Engine.IO v4 / Socket.IO v5 client over one WebSocket, for hostile tests.

Stock clients refuse to send garbage or to stop reading; this one does what it
is told, frame by frame (websocket-client underneath).  It answers pings only
while something reads (``next_event``), like a real client.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any, Callable, Optional

import websocket

SERVER_ID = "jsongle-server"


class RawClient:
    def __init__(self, port: int, *, rcvbuf: Optional[int] = None, timeout: float = 10.0) -> None:
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)] if rcvbuf else None
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=timeout, sockopt=options
        )
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened
        self.engine_sid = json.loads(opened[1:])["sid"]
        self.sid: Optional[str] = None

    # -- frames ------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv(self) -> Any:
        """The next frame; pings are answered on the way."""
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
                continue
            return frame

    def close_code(self, timeout: float = 10.0) -> Optional[int]:
        """The code of the server's close frame (frames before it are skipped);
        None when the TCP connection ended without one."""
        self.ws.settimeout(timeout)
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return None

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True once the server closes this WebSocket (frames before that are skipped)."""
        deadline = time.monotonic() + timeout
        self.ws.settimeout(timeout)
        try:
            while time.monotonic() < deadline:
                opcode, _ = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        return False

    # -- Socket.IO and JSONgle ---------------------------------------------

    def connect(self, token: str) -> dict[str, Any]:
        """CONNECT with ``token``; returns the session-hello."""
        self.send_text("40" + json.dumps({"appToken": token}))
        reply = self.recv()
        assert reply.startswith("40{"), reply
        self.sid = json.loads(reply[2:])["sid"]
        return self.next_event()

    def emit(self, *args: Any) -> None:
        self.send_text("42" + json.dumps(["jsongle", *args], separators=(",", ":")))

    def send(self, to: Any, jsongle: Any, **envelope: Any) -> dict[str, Any]:
        message = {"id": str(uuid.uuid4()), "from": self.sid, "to": to, "jsongle": jsongle, **envelope}
        self.emit(message)
        return message

    def next_event(self, where: Callable[[dict[str, Any]], bool] = lambda m: True) -> dict[str, Any]:
        """The next JSONgle message matching ``where`` (others are skipped)."""
        while True:
            frame = self.recv()
            if isinstance(frame, str) and frame.startswith("42"):
                name, message = json.loads(frame[2:])
                if name == "jsongle" and where(message):
                    return message

    def hello(self, token: str, uid: str) -> None:
        hello = self.connect(token)
        transaction = hello["jsongle"]["transaction"]
        self.send(SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": transaction, "description": {"uid": uid}})
        ack = self.next_event()
        assert ack["jsongle"]["status"] == "success", ack

    def join(self, rid: str, query: str = "session-join") -> dict[str, Any]:
        request = self.send(SERVER_ID, {"action": "iq-set", "query": query, "transaction": str(uuid.uuid4()), "description": {"rid": rid}})
        answer = self.next_event(lambda m: m["jsongle"].get("transaction") == request["jsongle"]["transaction"])
        assert answer["jsongle"]["action"] == "iq-result", answer
        return answer

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
