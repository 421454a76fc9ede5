"""A hostile client against the running daemon: hundreds of bad inputs, each a clean answer.

Every layer gets its garbage: raw WebSocket frames and handshakes, Engine.IO
and Socket.IO packets, CONNECT auth, JSONgle messages with every field wrong
in every way, long-polling requests and bodies, REST bodies and headers.
Each case asserts the answer it must get (a close code, a CONNECT_ERROR, a
JSONgle error code, an HTTP status and JSON body).  Meanwhile two
socket.io-client users in another room relay a message after every case:
one bad client never costs another user their call.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Optional

import pytest

from tests.support.rawclient import RawClient
from tests.test_protocol_e2e import SERVER_ID, TOKEN, connect, join

ADMIN = "adm1n-token"
MAX_PAYLOAD = 100_000
MAX_ID = 256
CONFIG = {
    "maxPayload": MAX_PAYLOAD,
    "maxConcurrentUsers": 50,
    "rateLimitPerSecond": 0,
    "connectFailuresPerIp": 0,
    "adminToken": ADMIN,
}

Case = tuple[str, Callable[[], None]]


# -- raw WebSocket -----------------------------------------------------------


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True, length: Optional[int] = None) -> bytes:
    """One client frame, as the RFC says or deliberately not."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload) if length is None else length
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawSocket:
    """A WebSocket opened by hand, to send what no library would."""

    def __init__(self, port: int, request: Optional[bytes] = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.sock.sendall(request or handshake())

    def http_status(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, head

    def open(self) -> "RawSocket":
        status, head = self.http_status()
        assert status == 101, head
        opcode, payload = self.next_frame()
        assert opcode == 1 and payload.startswith(b"0{"), payload
        return self

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def next_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(size)

    def close_code(self) -> Optional[int]:
        """The code of the server's close frame (None: TCP closed without one)."""
        try:
            while True:
                opcode, payload = self.next_frame()
                if opcode == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (EOFError, ConnectionError):
            return None
        finally:
            self.sock.close()


def handshake(
    path: str = "/socket.io/?EIO=4&transport=websocket",
    extra: tuple[str, ...] = (),
    request_line: Optional[str] = None,
    **headers: Optional[str],
) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update(headers)
    lines = [request_line or f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- HTTP --------------------------------------------------------------------


def http(method: str, url: str, body: Optional[bytes] = None, headers: Optional[dict[str, str]] = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def polling_sid(base: str) -> str:
    status, body = http("GET", base + "/socket.io/?EIO=4&transport=polling")
    assert status == 200, body
    return json.loads(body.decode("utf-8")[1:].split("\x1e")[0])["sid"]


# -- the cases ---------------------------------------------------------------


WRONG_VALUES: dict[str, Any] = {
    "number": 42,
    "negative": -1,
    "zero": 0,
    "float": 1.5,
    "true": True,
    "false": False,
    "object": {"a": "b"},
    "empty object": {},
    "array": ["r1"],
    "empty array": [],
    "null": None,
    "empty": "",
    "too long": "x" * (MAX_ID + 1),
    "far too long": "y" * 50_000,
}


class Hostile:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.port = daemon.ws_port
        self.base = daemon.ws_url
        self.rest = daemon.rest_url
        self.client: Optional[RawClient] = None

    # A registered hostile client in its own room "evil", reused across cases.
    def registered(self) -> RawClient:
        if self.client is None:
            self.client = RawClient(self.port)
            self.client.hello(TOKEN, "mallory")
            self.client.join("evil")
        return self.client

    def expect_error(self, message: Any, code: int, action: str = "session-error") -> None:
        client = self.registered()
        client.emit(message)
        answer = client.next_event(lambda m: m["jsongle"]["action"] in ("session-error", "iq-error", "ack", "session-info", "iq-result", "session-event"))
        assert answer["jsongle"]["action"] == action, answer
        assert answer["jsongle"]["description"]["errorCode"] == code, answer

    def ws_close(self, data: bytes, codes: set[Optional[int]], opened: bool = True) -> None:
        raw = RawSocket(self.port)
        if opened:
            raw.open()
        raw.sock.sendall(data)
        code = raw.close_code()
        assert code in codes, (code, data[:40])

    def eio_close(self, text: Any, codes: set[Optional[int]]) -> None:
        """Engine.IO garbage fails the WebSocket (Autobahn drops it, or closes
        with 1008); a packet that parses but makes no sense ends the session
        with a normal close (1000)."""
        client = RawClient(self.port)
        try:
            if isinstance(text, bytes):
                client.send_binary(text)
            else:
                client.send_text(text)
            assert client.close_code() in codes
        finally:
            client.close()


def websocket_cases(h: Hostile) -> list[Case]:
    text = b"4" + b'0{"appToken":"test-token"}'
    cases: list[Case] = [
        ("ws: unmasked client frame", lambda: h.ws_close(frame(1, text, mask=False), {1002, None})),
        ("ws: continuation without a start", lambda: h.ws_close(frame(0, b"x"), {1002, None})),
        ("ws: fragmented ping", lambda: h.ws_close(frame(9, b"x", fin=False), {1002, None})),
        ("ws: ping longer than 125 bytes", lambda: h.ws_close(frame(9, b"x" * 126), {1002, None})),
        ("ws: close with a 1-byte body", lambda: h.ws_close(frame(8, b"\x03"), {1002, None})),
        ("ws: text that is not UTF-8", lambda: h.ws_close(frame(1, b"4\xff\xfe\xfd"), {1007, None})),
        ("ws: frame announcing 2**63 bytes", lambda: h.ws_close(frame(1, b"", length=2**63), {1002, 1009, None})),
        ("ws: frame longer than maxPayload", lambda: h.ws_close(frame(1, b"", length=MAX_PAYLOAD + 1), {1009, None})),
        ("ws: new text frame inside a fragmented one", lambda: h.ws_close(frame(1, b"4", fin=False) + frame(1, b"x"), {1002, None})),
        ("ws: clean close", lambda: h.ws_close(frame(8, struct.pack("!H", 1000)), {1000})),
        ("ws: garbage bytes instead of a frame", lambda: h.ws_close(b"\x00" * 64, {1002, None})),
    ]
    for rsv in (1, 2, 4):
        cases.append((f"ws: reserved bits {rsv}", lambda rsv=rsv: h.ws_close(frame(1, b"6", rsv=rsv), {1002, None})))
    for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        cases.append((f"ws: reserved opcode {opcode}", lambda opcode=opcode: h.ws_close(frame(opcode, b"x"), {1002, None})))
    for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000):
        cases.append((f"ws: close code {code}", lambda code=code: h.ws_close(frame(8, struct.pack("!H", code)), {1002, None})))

    def bad_handshake(statuses: set[int], **kwargs: Any) -> None:
        raw = RawSocket(h.port, handshake(**kwargs))
        try:
            status, head = raw.http_status()
            assert status in statuses, head
        finally:
            raw.sock.close()

    cases += [
        ("handshake: version 99", lambda: bad_handshake({400, 426}, **{"Sec-WebSocket-Version": "99"})),
        ("handshake: no key", lambda: bad_handshake({400}, **{"Sec-WebSocket-Key": None})),
        ("handshake: no Upgrade header", lambda: bad_handshake({400}, Upgrade=None)),
        ("handshake: Upgrade: h2c", lambda: bad_handshake({400}, Upgrade="h2c")),
        ("handshake: EIO=3", lambda: bad_handshake({400}, path="/socket.io/?EIO=3&transport=websocket")),
        ("handshake: no EIO", lambda: bad_handshake({400}, path="/socket.io/?transport=websocket")),
        ("handshake: unknown sid", lambda: bad_handshake({400}, path="/socket.io/?EIO=4&transport=websocket&sid=nope")),
        ("handshake: sid not UTF-8", lambda: bad_handshake({400}, path="/socket.io/?EIO=4&transport=websocket&sid=%ff")),
        ("handshake: version 8", lambda: bad_handshake({400}, **{"Sec-WebSocket-Version": "8"})),
        ("handshake: two versions", lambda: bad_handshake({400}, extra=("Sec-WebSocket-Version: 13",))),
        ("handshake: two keys", lambda: bad_handshake({400}, extra=("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",))),
        ("handshake: key of 15 bytes", lambda: bad_handshake({400}, **{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"})),
        ("handshake: key not base64", lambda: bad_handshake({400}, **{"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAA*=="})),
        ("handshake: no Connection header", lambda: bad_handshake({400}, Connection=None)),
        ("handshake: Connection: keep-alive", lambda: bad_handshake({400}, Connection="keep-alive")),
        ("handshake: no Host", lambda: bad_handshake({400}, Host=None)),
        ("handshake: two Hosts", lambda: bad_handshake({400}, extra=("Host: other.example",))),
        ("handshake: two Origins", lambda: bad_handshake({400}, Origin="https://a.example", extra=("Origin: https://b.example",))),
        ("handshake: Origin without a host", lambda: bad_handshake({400}, Origin="no-host-here")),
        ("handshake: fragment", lambda: bad_handshake({400}, path="/socket.io/?EIO=4&transport=websocket&t=1#x")),
        ("handshake: POST", lambda: bad_handshake({405}, request_line="POST /socket.io/?EIO=4&transport=websocket HTTP/1.1")),
        ("handshake: HTTP/1.0", lambda: bad_handshake({400}, request_line="GET /socket.io/?EIO=4&transport=websocket HTTP/1.0")),
    ]
    return cases


def engineio_cases(h: Hostile) -> list[Case]:
    garbage = ["", "7", "x", "9hello", " 4", "\u00e94", "b4AAA", "-1", "\x1e4"]
    cases: list[Case] = [(f"eio: {text!r}", lambda text=text: h.eio_close(text, {1008, None})) for text in garbage]
    senseless = ["0", "0{}", "5", "5probe"]
    cases += [(f"eio: {text!r} on an open session", lambda text=text: h.eio_close(text, {1000})) for text in senseless]
    cases += [
        ("eio: binary before CONNECT", lambda: h.eio_close(b"\x00\x01", {1000})),
        ("eio: close packet", lambda: h.eio_close("1", {1000})),
    ]
    return cases


def socketio_cases(h: Hostile) -> list[Case]:
    bad = [
        "4", "47", "4x", "40[1]", "40\"str\"", "41{}", "42{}", "42[]", "42[1.5]", "42[null]", "42[true]",
        "42[{}]", "43", "43[]", "44{}", "45-[]", "451x", "4999-[\"a\"]", "4511-[\"a\"]", "42[\"a\"", "42[\"a\"]]",
        "4" + "[" * 45_000 + "]" * 45_000, "42" + '["a",' + "[" * 45_000 + "]" * 45_000 + "]", "40{\"a\":}",
        "4/", "40/x,{", "420abc", "4" + "1" * 30 + '["a"]', '42["jsongle",{"_placeholder":true,"num":0}]xyz',
    ]
    cases: list[Case] = [(f"sio: {text[:40]!r}", lambda text=text: h.eio_close(text, {1000})) for text in bad]

    def after_binary_head(second: Any) -> None:
        client = RawClient(h.port)
        try:
            client.connect(TOKEN)
            client.send_text('451-["jsongle",{"_placeholder":true,"num":0}]')
            client.send_text(second)
            assert client.close_code() == 1000
        finally:
            client.close()

    cases.append(("sio: text where an attachment is due", lambda: after_binary_head('42["x"]')))

    def refused_namespace(namespace: str) -> None:
        client = RawClient(h.port)
        try:
            client.send_text(f"40{namespace},")
            reply = client.recv()
            assert reply == f'44{namespace},{{"message":"Invalid namespace"}}', reply
        finally:
            client.close()

    for namespace in ("/admin", "/x" * 50, "/\u00e9", "/jsongle"):
        cases.append((f"sio: CONNECT to {namespace[:12]}", lambda namespace=namespace: refused_namespace(namespace)))

    def refused_auth(auth: Any, message: str) -> None:
        client = RawClient(h.port)
        try:
            client.send_text("40" + json.dumps(auth) if auth is not None else "401")
            reply = client.recv()
            assert reply == "44" + json.dumps({"message": message}, separators=(",", ":")), reply
        finally:
            client.close()

    for label, auth, message in [
        ("no token", {}, "missing appToken"),
        ("null token", {"appToken": None}, "missing appToken"),
        ("empty token", {"appToken": ""}, "missing appToken"),
        ("number token", {"appToken": 42}, "missing appToken"),
        ("object token", {"appToken": {"a": 1}}, "missing appToken"),
        ("array token", {"appToken": [TOKEN]}, "missing appToken"),
        ("wrong token", {"appToken": "wrong"}, "invalid appToken"),
        ("token prefix", {"appToken": TOKEN[:-1]}, "invalid appToken"),
        ("token with a suffix", {"appToken": TOKEN + "x"}, "invalid appToken"),
        ("long token", {"appToken": "t" * 50_000}, "invalid appToken"),
        ("unicode token", {"appToken": "t\u00e9st-token"}, "invalid appToken"),
        ("token in another key", {"token": TOKEN}, "missing appToken"),
        ("CONNECT with an ack id and no auth", None, "missing appToken"),
    ]:
        cases.append((f"connect: {label}", lambda auth=auth, message=message: refused_auth(auth, message)))
    return cases


def jsongle_cases(h: Hostile) -> list[Case]:
    cases: list[Case] = []

    def message(to: Any = "evil", **jsongle: Any) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "from": "mallory", "to": to, "jsongle": {"action": "session-text", **jsongle}}

    # Envelope ids and jsongle ids: a session-error 400001 each.
    for field in ("id", "to"):
        for kind, value in WRONG_VALUES.items():
            def case(field: str = field, value: Any = value) -> None:
                body = message()
                body[field] = value
                h.expect_error(body, 400001)

            cases.append((f"jsongle: {field} {kind}", case))
    for field in ("transaction", "namespace", "sid"):
        for kind, value in WRONG_VALUES.items():
            cases.append((f"jsongle: {field} {kind}", lambda field=field, value=value: h.expect_error(message(**{field: value}), 400001)))
    # Room ids: an iq-error 400001, for each query.
    for query in ("session-join", "muc-join", "session-leave"):
        for kind, value in WRONG_VALUES.items():
            body = {"id": str(uuid.uuid4()), "from": "mallory", "to": SERVER_ID, "jsongle": {"action": "iq-set", "query": query, "transaction": "t1", "description": {"rid": value}}}
            cases.append((f"jsongle: {query} rid {kind}", lambda body=body: h.expect_error(body, 400001, "iq-error")))

    # The hello identity: a failed ack and a 400001, on a fresh connection each.
    def bad_hello(description: Any) -> None:
        client = RawClient(h.port)
        try:
            hello = client.connect(TOKEN)
            client.send(SERVER_ID, {"action": "iq-result", "query": "session-hello", "transaction": hello["jsongle"]["transaction"], "description": description})
            ack = client.next_event()
            assert ack["jsongle"]["action"] == "ack" and ack["jsongle"]["status"] == "failed", ack
            error = client.next_event()
            assert error["jsongle"]["description"]["errorCode"] == 400001, error
        finally:
            client.close()

    for kind, value in WRONG_VALUES.items():
        cases.append((f"hello: uid {kind}", lambda value=value: bad_hello({"uid": value, "dn": "Mallory"})))
        if kind != "too long":
            cases.append((f"hello: dn {kind}", lambda value=value: bad_hello({"uid": "mallory", "dn": value})))
    cases.append(("hello: dn too long", lambda: bad_hello({"uid": "mallory", "dn": "d" * 129})))
    for kind, description in [("no description", None), ("string description", "uid"), ("array description", ["mallory"])]:
        cases.append((f"hello: {kind}", lambda description=description: bad_hello(description)))

    # Not a JSONgle message at all: 400002.
    for kind, payload in [
        ("string", "hello"), ("number", 42), ("array", ["a"]), ("null", None), ("true", True),
        ("no jsongle", {"id": "x", "to": SERVER_ID}), ("jsongle string", {"jsongle": "iq-set"}),
        ("jsongle array", {"jsongle": []}), ("jsongle null", {"jsongle": None}), ("jsongle number", {"jsongle": 1}),
    ]:
        cases.append((f"jsongle: payload {kind}", lambda payload=payload: h.expect_error(payload, 400002)))

    # Routing and actions: the documented codes.
    cases += [
        ("jsongle: to a room of others", lambda: h.expect_error(message("good"), 404002)),
        ("jsongle: to no room", lambda: h.expect_error(message("nowhere"), 404002)),
        ("jsongle: no to", lambda: h.expect_error({"jsongle": {"action": "session-text"}}, 404002)),
        ("jsongle: alone in a room", lambda: h.expect_error(message(), 404003)),
        ("jsongle: leave a room of others", lambda: h.expect_error({"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": "session-leave", "transaction": "t", "description": {"rid": "good"}}}, 404002, "iq-error")),
        ("jsongle: join a full room", lambda: h.expect_error({"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": "session-join", "transaction": "t", "description": {"rid": "good"}}}, 403001, "iq-error")),
        ("jsongle: muc-join a P2P room", lambda: h.expect_error({"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": "muc-join", "transaction": "t", "description": {"rid": "good"}}}, 400001, "iq-error")),
    ]
    for query in ("session-hello", "session-kick", "", "x" * 200, "SESSION-JOIN", "session-join ", "admin", "eval", "../etc/passwd", "__proto__"):
        body = {"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": query, "transaction": "t", "description": {}}}
        cases.append((f"jsongle: unknown query {query[:16]!r}", lambda body=body: h.expect_error(body, 404001, "iq-error")))
    for query in (None, 42, ["session-join"], {"q": 1}):
        body = {"to": SERVER_ID, "jsongle": {"action": "iq-set", "query": query, "transaction": "t"}}
        cases.append((f"jsongle: query {type(query).__name__}", lambda body=body: h.expect_error(body, 404001, "iq-error")))
    for action in ("session-hack", "", "iq-get", "iq-error", "ack", 42, None, ["session-text"], {"a": 1}, "x" * 300):
        body = {"to": SERVER_ID, "jsongle": {"action": action}}
        cases.append((f"jsongle: action {str(action)[:16]!r}", lambda body=body: h.expect_error(body, 405001)))

    # Before the hello: 403002, whatever it is.
    def before_hello(body: Any) -> None:
        client = RawClient(h.port)
        try:
            client.connect(TOKEN)
            client.emit(body)
            answer = client.next_event()
            assert answer["jsongle"]["description"]["errorCode"] == 403002, answer
        finally:
            client.close()

    for action in ("session-text", "iq-set", "session-propose", "session-metrics"):
        body = {"to": SERVER_ID, "jsongle": {"action": action, "query": "session-join", "description": {"rid": "good"}}}
        cases.append((f"before hello: {action}", lambda body=body: before_hello(body)))
    return cases


def polling_cases(h: Hostile) -> list[Case]:
    cases: list[Case] = []
    url = h.base + "/socket.io/"

    def post(body: bytes, status: int = 400, code: int = 3) -> None:
        sid = polling_sid(h.base)
        answer_status, answer = http("POST", f"{url}?EIO=4&transport=polling&sid={sid}", body, {"Content-Type": "text/plain"})
        assert answer_status == status, answer
        assert json.loads(answer)["code"] == code, answer

    for label, body in [
        ("empty", b""), ("separator only", b"\x1e"), ("b alone", b"b"), ("bad base64", b"b!!!"),
        ("type 9", b"9x"), ("type x", b"x"), ("not UTF-8", b"4\xff\xfe"), ("empty part", b"4a\x1e\x1e4b"),
        ("open packet", b"0"), ("upgrade packet", b"5"), ("bad SIO", b"4x"), ("SIO deep", b"4" + b"[" * 45_000),
        ("NUL", b"\x00"), ("space", b" 4"), ("type then separator", b"4\x1e9"),
    ]:
        expected_code = 3
        cases.append((f"polling: body {label}", lambda body=body, expected_code=expected_code: post_bad(h, body)))
    cases.append(("polling: body over maxPayload", lambda: post(b"4" + b"x" * (MAX_PAYLOAD + 1), 413, 3)))

    def query(path: str, method: str = "GET", status: int = 400, code: int = 3, body: Optional[bytes] = None) -> None:
        answer_status, answer = http(method, url + path, body)
        assert answer_status == status, answer
        assert json.loads(answer)["code"] == code, answer

    cases += [
        ("polling: EIO=3", lambda: query("?EIO=3&transport=polling", code=5)),
        ("polling: EIO missing", lambda: query("?transport=polling", code=5)),
        ("polling: EIO=abc", lambda: query("?EIO=abc&transport=polling", code=5)),
        ("polling: unknown transport", lambda: query("?EIO=4&transport=flash", code=0)),
        ("polling: no transport", lambda: query("?EIO=4", code=0)),
        ("polling: unknown sid GET", lambda: query("?EIO=4&transport=polling&sid=nope", code=1)),
        ("polling: unknown sid POST", lambda: query("?EIO=4&transport=polling&sid=nope", "POST", code=1, body=b"40")),
        ("polling: handshake by POST", lambda: query("?EIO=4&transport=polling", "POST", code=2, body=b"40")),
        ("polling: PUT", lambda: query("?EIO=4&transport=polling&sid=" + polling_sid(h.base), "PUT", code=3, body=b"40")),
        ("polling: DELETE", lambda: query("?EIO=4&transport=polling&sid=" + polling_sid(h.base), "DELETE", code=3)),
        ("polling: sid not UTF-8", lambda: query("?EIO=4&transport=polling&sid=%ff", code=1)),
        ("polling: websocket without Upgrade", lambda: query("?EIO=4&transport=websocket", code=3)),
    ]

    def overlapping_gets() -> None:
        sid = polling_sid(h.base)
        first = socket.create_connection(("127.0.0.1", h.port), timeout=10)
        try:
            first.sendall(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, answer = http("GET", f"{url}?EIO=4&transport=polling&sid={sid}")
            assert status == 400 and json.loads(answer)["code"] == 3, answer
            assert b"\r\n\r\n1" in first.recv(65536)  # the first GET gets the CLOSE
        finally:
            first.close()

    cases.append(("polling: two GETs at once", overlapping_gets))
    return cases


def post_bad(h: Hostile, body: bytes) -> None:
    sid = polling_sid(h.base)
    url = f"{h.base}/socket.io/?EIO=4&transport=polling&sid={sid}"
    status, answer = http("POST", url, body, {"Content-Type": "text/plain"})
    if status == 200:
        # A packet the Engine.IO codec accepts but the session refuses
        # (OPEN/UPGRADE, a bad Socket.IO packet): the session is closed.
        assert answer == b"ok"
        status, answer = http("GET", url)
        assert status == 200 and answer.endswith(b"1") or status == 400, answer
    else:
        assert status == 400 and json.loads(answer) == {"code": 3, "message": "Bad request"}, answer
    # Either way the session is gone.
    status, answer = http("POST", url, b"40")
    assert status == 400 and json.loads(answer)["code"] == 1, answer


def rest_cases(h: Hostile) -> list[Case]:
    cases: list[Case] = []
    auth = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}

    def put_level(body: bytes, status: int, code: int, headers: Optional[dict[str, str]] = None) -> None:
        answer_status, answer = http("PUT", h.rest + "/logs/levels", body, headers if headers is not None else auth)
        assert answer_status == status, answer
        assert json.loads(answer)["errorCode"] == code, answer

    for label, body in [
        ("empty", b""), ("not JSON", b"level=debug"), ("array", b"[]"), ("string", b'"debug"'), ("null", b"null"),
        ("number", b"42"), ("no level", b"{}"), ("level number", b'{"level":1}'), ("level null", b'{"level":null}'),
        ("level array", b'{"level":["debug"]}'), ("unknown level", b'{"level":"verbose"}'), ("empty level", b'{"level":""}'),
        ("not UTF-8", b'{"level":"\xff"}'), ("deep JSON", b"[" * 100_000 + b"]" * 100_000), ("deep object", b'{"level":' * 50_000), ("huge level", b'{"level":"' + b"d" * 100_000 + b'"}'),
        ("truncated", b'{"level":'), ("NaN", b'{"level":NaN}'),
    ]:
        cases.append((f"rest: level body {label}", lambda body=body: put_level(body, 400, 400001)))
    for label, headers in [
        ("no Authorization", {}), ("wrong token", {"Authorization": "Bearer nope"}), ("Basic", {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}),
        ("empty Bearer", {"Authorization": "Bearer "}), ("token without Bearer", {"Authorization": ADMIN}), ("long token", {"Authorization": "Bearer " + "t" * 8000}),
        ("latin-1 token", {"Authorization": "Bearer \u00e9"}),
    ]:
        cases.append((f"rest: PUT level with {label}", lambda headers=headers: put_level(b'{"level":"debug"}', 401, 401000, headers)))
        cases.append((f"rest: GET logs with {label}", lambda headers=headers: rest_status("GET", h.rest + "/logs", 401, 401000, headers)))
    for path in ("/nope", "/logs/levels/x", "/../etc/passwd", "/about/", "/" + "a" * 4000, "/metrics/x", "/%00"):
        cases.append((f"rest: GET {path[:20]}", lambda path=path: rest_status("GET", h.rest + path, 404, 404000)))
    for path in ("/%ff", "/about%c3", "/logs/%80levels"):
        cases.append((f"rest: GET {path} (not UTF-8)", lambda path=path: rest_status("GET", h.rest + path, 400, 400001)))
    for method, path in (("POST", "/about"), ("DELETE", "/health"), ("PUT", "/stats"), ("POST", "/logs/levels"), ("PATCH", "/ping")):
        cases.append((f"rest: {method} {path}", lambda method=method, path=path: rest_status(method, h.rest + path, 405, 405000)))

    def huge_header() -> None:
        sock = socket.create_connection(("127.0.0.1", int(h.rest.rsplit(":", 1)[1])), timeout=10)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 70_000 + b"\r\n\r\n")
            answer = b""
            while b"\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
        finally:
            sock.close()

    def garbage_request() -> None:
        sock = socket.create_connection(("127.0.0.1", int(h.rest.rsplit(":", 1)[1])), timeout=10)
        try:
            sock.sendall(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
            answer = sock.recv(65536)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
        finally:
            sock.close()

    cases += [("rest: header line over 64 KiB", huge_header), ("rest: TLS hello on plain HTTP", garbage_request)]
    return cases


def rest_status(method: str, url: str, status: int, code: int, headers: Optional[dict[str, str]] = None) -> None:
    answer_status, answer = http(method, url, None if method in ("GET", "DELETE") else b"{}", headers)
    assert answer_status == status, answer
    assert json.loads(answer)["errorCode"] == code, answer


# -- the test ----------------------------------------------------------------


def test_hostile_client_gets_clean_answers_while_others_keep_talking(daemon_factory, puppet, capsys):
    daemon = daemon_factory(CONFIG)
    alice = connect(puppet, daemon, "alice", "alice")
    bob = connect(puppet, daemon, "bob", "bob")
    join(alice, "good")
    join(bob, "good", members=(alice,))
    alice.receive()  # bob joined

    hostile = Hostile(daemon)
    cases = (
        websocket_cases(hostile)
        + engineio_cases(hostile)
        + socketio_cases(hostile)
        + jsongle_cases(hostile)
        + polling_cases(hostile)
        + rest_cases(hostile)
    )
    labels = [label for label, _ in cases]
    assert len(set(labels)) == len(labels), [label for label in labels if labels.count(label) > 1]

    failed = []  # every case runs; all failures are reported at the end
    for n, (label, run) in enumerate(cases):
        try:
            run()
        except Exception as error:
            failed.append(f"case {label!r}: {type(error).__name__} {str(error)[:300]}")
        # The well-behaved pair relays after every case, both ways in turn.
        sender, receiver = (alice, bob) if n % 2 == 0 else (bob, alice)
        sent = sender.send("good", {"action": "session-info", "n": n})
        received = receiver.receive()
        assert received["id"] == sent["id"], f"after case {label!r}: {received}"
    assert failed == [], "\n".join(failed)
    if hostile.client is not None:
        hostile.client.close()
    with capsys.disabled():
        print(f"\nhostile client: {len(cases)} distinct bad inputs, each answered cleanly; the good pair relayed {len(cases)} messages")
    assert len(cases) >= 300
    assert daemon.returncode is None
