"""examples/protocol_echo.py behaves as the public protocol test suites expect.

A few of the Engine.IO / Socket.IO suites' checks, replayed with hand-written
HTTP requests (standard library) and WebSocket frames (websocket-client)
against the example running in its own process on a free port.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Union

import pytest
import websocket

from tests.support import processes

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "protocol_echo.py"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
RS = "\x1e"  # separates packets in a polling payload


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield _read_port(proc)
    finally:
        processes.stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _read_port(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    try:
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))
    finally:
        selector.close()
    raise AssertionError(f"the example did not report its port; output: {''.join(seen)!r}")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def polling_handshake(port: int, path: str = "/engine.io/") -> dict:
    status, _, body = request(port, "GET", f"{path}?EIO=4&transport=polling")
    assert status == 200
    text = body.decode("utf-8")
    assert text[0] == "0"
    return json.loads(text[1:])


def test_polling_handshake_fields(port):
    for path in ("/engine.io/", "/socket.io/"):
        handshake = polling_handshake(port, path)
        assert list(handshake) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
        assert isinstance(handshake["sid"], str) and handshake["sid"]
        assert handshake["upgrades"] == ["websocket"]
        assert handshake["pingInterval"] == 300
        assert handshake["pingTimeout"] == 200
        assert handshake["maxPayload"] == 1000000


def test_polling_echoes_two_packets_in_one_get(port):
    sid = polling_handshake(port)["sid"]
    url = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
    status, _, body = request(port, "POST", url, f"4test1{RS}4test2".encode())
    assert (status, body) == (200, b"ok")
    status, _, body = request(port, "GET", url)
    assert status == 200
    # A heartbeat ping may share the response if the machine is slow.
    packets = [p for p in body.decode("utf-8").split(RS) if p != "2"]
    assert packets == ["4test1", "4test2"]


@pytest.mark.parametrize("query", ["EIO=3&transport=polling", "EIO=abc&transport=polling", "transport=polling"])
def test_bad_eio_is_refused(port, query):
    status, content_type, body = request(port, "GET", f"/engine.io/?{query}")
    assert status == 400
    assert content_type == "application/json"
    assert json.loads(body) == {"code": 5, "message": "Unsupported protocol version"}


def _recv(ws: websocket.WebSocket) -> Union[str, bytes]:
    """The next frame that is not a ping (pings are answered)."""
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            text = data.decode("utf-8")
            if text == "2":
                ws.send("3")
                continue
            return text
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return data
        raise AssertionError(f"unexpected frame opcode {opcode}")


def test_websocket_binary_event_is_echoed_with_attachments(port):
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", timeout=5)
    try:
        opening = _recv(ws)
        assert isinstance(opening, str) and opening.startswith("0")
        assert json.loads(opening[1:])["upgrades"] == []
        ws.send("40")
        connected = _recv(ws)
        assert isinstance(connected, str) and connected.startswith("40")
        assert list(json.loads(connected[2:])) == ["sid"]
        assert _recv(ws) == '42["auth",{}]'

        placeholders = '{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}'
        ws.send(f'452-["message",{placeholders}]')
        ws.send_binary(bytes([1, 2, 3]))
        ws.send_binary(bytes([4, 5, 6]))
        assert _recv(ws) == f'452-["message-back",{placeholders}]'
        assert _recv(ws) == bytes([1, 2, 3])
        assert _recv(ws) == bytes([4, 5, 6])

        ws.send(f'452-789["message-with-ack",{placeholders}]')
        ws.send_binary(bytes([7]))
        ws.send_binary(bytes([8, 9]))
        assert _recv(ws) == f"462-789[{placeholders}]"
        assert _recv(ws) == bytes([7])
        assert _recv(ws) == bytes([8, 9])
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["/engine.io/", "/socket.io/"])
def test_any_origin_may_run_the_suites_in_a_browser(port, path):
    """``cors: {origin: "*"}`` as the suites' READMEs ask: the browser suite runs from another origin."""
    origin = "http://127.0.0.1:1"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("OPTIONS", f"{path}?EIO=4&transport=polling", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        response = connection.getresponse()
        response.read()
        assert response.status == 204
        assert response.getheader("access-control-allow-origin") == origin
        assert response.getheader("access-control-allow-headers") == "content-type"
        connection.request("GET", f"{path}?EIO=4&transport=polling", headers={"Origin": origin})
        response = connection.getresponse()
        assert response.read().startswith(b"0{")
        assert response.getheader("access-control-allow-origin") == origin
    finally:
        connection.close()
