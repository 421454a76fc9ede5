"""The transport, end to end: the real daemon driven by real Socket.IO clients.

socket.io-client (Node.js, through the puppet) and python-socketio connect
over long-polling, WebSocket and the upgrade between them; they get the
session-hello, survive heartbeats, and are refused or dropped cleanly.
"""

from __future__ import annotations

import json
import logging
import queue
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import pytest

from tests.support.wsframe import RawClient as WebSocketClient
from tests.support.wsframe import frame

TOKEN = "test-token"  # the harness's default appToken
SERVER_ID = "jsongle-server"
# Fast heartbeats, so "three pings" takes about a second.
FAST = {"pingInterval": 300, "pingTimeout": 200}
# socket.io-client with reconnection ON (its default) but a short delay, so
# that a reconnection loop would show within a short quiet window.
QUICK_RECONNECT = {"reconnectionDelay": 50, "reconnectionDelayMax": 100}


# -- JSONgle messages ------------------------------------------------------


def hello_answer(hello: dict[str, Any], sender: str, description: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "from": sender,
        "to": SERVER_ID,
        "jsongle": {
            "action": "iq-result",
            "query": "session-hello",
            "transaction": hello["jsongle"]["transaction"],
            "description": description,
        },
    }


def join_request(sender: str, rid: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "from": sender,
        "to": SERVER_ID,
        "jsongle": {"action": "iq-set", "query": "session-join", "transaction": str(uuid.uuid4()), "description": {"rid": rid}},
    }


def check_hello(hello: dict[str, Any], socket_id: str) -> None:
    assert hello["from"] == SERVER_ID
    assert hello["to"] == socket_id
    jsongle = hello["jsongle"]
    assert jsongle["action"] == "iq-get" and jsongle["query"] == "session-hello"
    assert jsongle["transaction"]
    assert jsongle["description"]["sn"] == SERVER_ID


def is_action(action: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        jsongle = message.get("jsongle") or {}
        return jsongle.get("action") == action and all(jsongle.get(k) == v for k, v in fields.items())

    return match


def engineio_sid_known(port: int, sid: str) -> bool:
    """Whether the server knows ``sid`` as an Engine.IO session id."""
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling&sid={sid}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()
            return True
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
        return body.get("code") != 1  # 1: "Session ID unknown"


# -- socket.io-client (puppet) ---------------------------------------------


def puppet_connect(puppet, name: str, daemon, **options: Any) -> dict[str, Any]:
    """Connect and return the connect line."""
    options.setdefault("auth", {"appToken": TOKEN})
    puppet.connect(name, daemon.ws_url, **options)
    return puppet.next(name, "connect")


def puppet_hello(puppet, name: str, socket_id: str, uid: str) -> None:
    """Answer the session-hello and check the ack."""
    hello = puppet.next_jsongle(name, where=is_action("iq-get", query="session-hello"))
    check_hello(hello, socket_id)
    puppet.emit(name, "jsongle", hello_answer(hello, socket_id, {"uid": uid, "dn": uid.title()}))
    transaction = hello["jsongle"]["transaction"]
    ack = puppet.next_jsongle(name, where=is_action("ack"))
    assert ack["jsongle"] == {"action": "ack", "status": "success", "transaction": transaction}
    assert ack["to"] == socket_id


def puppet_join(puppet, name: str, socket_id: str, rid: str) -> dict[str, Any]:
    request = join_request(socket_id, rid)
    puppet.emit(name, "jsongle", request)
    transaction = request["jsongle"]["transaction"]
    answer = puppet.next_jsongle(name, where=lambda m: (m.get("jsongle") or {}).get("transaction") == transaction)
    assert answer["jsongle"]["action"] == "iq-result"
    assert answer["jsongle"]["description"]["rid"] == rid
    return answer


def drop_lines(puppet, name: str, kind: str) -> None:
    """Consume the lines of *kind* received so far (e.g. earlier pings)."""
    while any(line.get("type") == kind for line in puppet.pending(name)):
        puppet.next(name, kind, timeout=0)


def no_line(puppet, name: str, kind: str) -> None:
    assert not [line for line in puppet.pending(name) if line.get("type") == kind], puppet.pending(name)


@pytest.mark.parametrize("transports", [None, ["websocket"]], ids=["default", "websocket-only"])
def test_socketio_client_session(daemon_factory, puppet, transports):
    daemon = daemon_factory(FAST)
    options: dict[str, Any] = {} if transports is None else {"transports": transports}
    connected = puppet_connect(puppet, "a", daemon, **options)
    socket_id = connected["id"]
    if transports is None:
        # Engine.IO opened over polling: the client reports the upgrade.
        assert puppet.next("a", "upgrade")["transport"] == "websocket"
    else:
        assert connected["transport"] == "websocket"
    puppet_hello(puppet, "a", socket_id, "alice")
    # The socket id is not an Engine.IO session id.
    assert not engineio_sid_known(daemon.ws_port, socket_id)
    drop_lines(puppet, "a", "ping")
    for _ in range(3):
        puppet.next("a", "ping", timeout=5)
    no_line(puppet, "a", "disconnect")
    puppet_join(puppet, "a", socket_id, "room-1")
    no_line(puppet, "a", "disconnect")
    no_line(puppet, "a", "connect_error")
    if transports is not None:
        no_line(puppet, "a", "upgrade")


def test_hello_without_uid(daemon_factory, puppet):
    daemon = daemon_factory()
    socket_id = puppet_connect(puppet, "a", daemon)["id"]
    hello = puppet.next_jsongle("a", where=is_action("iq-get"))
    puppet.emit("a", "jsongle", hello_answer(hello, socket_id, {"dn": "Nobody"}))
    ack = puppet.next_jsongle("a", where=is_action("ack"))
    assert ack["jsongle"] == {"action": "ack", "status": "failed", "transaction": hello["jsongle"]["transaction"]}
    error = puppet.next_jsongle("a", where=is_action("session-error"))
    assert error["jsongle"]["description"] == {"errorCode": 400001, "errorDetails": "Missing 'uid' parameter"}
    # Still unregistered: a query is refused.
    puppet.emit("a", "jsongle", join_request(socket_id, "r"))
    error = puppet.next_jsongle("a", where=is_action("session-error"))
    assert error["jsongle"]["description"]["errorCode"] == 403002


def test_message_before_hello(daemon_factory, puppet):
    daemon = daemon_factory()
    socket_id = puppet_connect(puppet, "a", daemon)["id"]
    puppet.next_jsongle("a", where=is_action("iq-get"))
    puppet.emit("a", "jsongle", join_request(socket_id, "r"))
    error = puppet.next_jsongle("a", where=is_action("session-error"))
    assert error["to"] == socket_id
    assert error["jsongle"]["description"]["errorCode"] == 403002
    no_line(puppet, "a", "disconnect")


# -- refusals --------------------------------------------------------------


@pytest.mark.parametrize(
    "auth, message",
    [({"appToken": "wrong"}, "invalid appToken"), ({}, "missing appToken"), (None, "missing appToken")],
    ids=["wrong", "empty-auth", "no-auth"],
)
def test_bad_token_is_refused_once(daemon_factory, puppet, auth, message):
    daemon = daemon_factory()
    options: dict[str, Any] = dict(QUICK_RECONNECT)
    if auth is not None:
        options["auth"] = auth
    puppet.connect("a", daemon.ws_url, **options)
    assert puppet.next("a", "connect_error")["message"] == message
    puppet.assert_quiet("a", "reconnect_attempt", within=0.6)
    no_line(puppet, "a", "connect")
    no_line(puppet, "a", "connect_error")


def test_server_full_is_refused_once(daemon_factory, puppet):
    daemon = daemon_factory({"maxConcurrentUsers": 1})
    assert "maxConcurrentUsers=1" in daemon.env_path.read_text().splitlines()
    socket_id = puppet_connect(puppet, "a", daemon)["id"]
    puppet_hello(puppet, "a", socket_id, "alice")
    puppet.connect("b", daemon.ws_url, auth={"appToken": TOKEN}, **QUICK_RECONNECT)
    assert puppet.next("b", "connect_error")["message"] == "server full"
    puppet.assert_quiet("b", "reconnect_attempt", within=0.6)
    no_line(puppet, "b", "connect")
    puppet_join(puppet, "a", socket_id, "room-1")


def test_unknown_namespace_is_refused_once(daemon_factory, puppet):
    daemon = daemon_factory()
    puppet.connect("a", daemon.ws_url + "/nope", auth={"appToken": TOKEN}, **QUICK_RECONNECT)
    assert puppet.next("a", "connect_error")["message"] == "Invalid namespace"
    puppet.assert_quiet("a", "reconnect_attempt", within=0.6)
    no_line(puppet, "a", "connect")


# -- heartbeats and limits -------------------------------------------------


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]], ids=["polling", "websocket"])
def test_client_that_stops_ponging_is_dropped(daemon_factory, puppet, transports):
    daemon = daemon_factory({**FAST, "maxConcurrentUsers": 2})
    a = puppet_connect(puppet, "a", daemon, transports=transports, reconnection=False)["id"]
    puppet_hello(puppet, "a", a, "alice")
    b = puppet_connect(puppet, "b", daemon)["id"]
    puppet_hello(puppet, "b", b, "bob")
    puppet.stop_pong("a")
    puppet.next("a", "disconnect", timeout=5)
    daemon.wait_for_line(rf"{a} disconnected \(ping timeout\)", timeout=5)
    # b goes on through further heartbeats.
    for _ in range(2):
        puppet.next("b", "ping", timeout=5)
    puppet_join(puppet, "b", b, "room-b")
    no_line(puppet, "b", "disconnect")
    # a no longer counts: a new client fits under maxConcurrentUsers=2.
    c = puppet_connect(puppet, "c", daemon)["id"]
    puppet_hello(puppet, "c", c, "carol")


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]], ids=["polling", "websocket"])
def test_message_over_max_payload_closes_the_client(daemon_factory, puppet, transports):
    daemon = daemon_factory({**FAST, "maxPayload": 1000})
    a = puppet_connect(puppet, "a", daemon, transports=transports, reconnection=False)["id"]
    puppet_hello(puppet, "a", a, "alice")
    b = puppet_connect(puppet, "b", daemon, transports=transports)["id"]
    puppet_hello(puppet, "b", b, "bob")
    # A small event still passes.
    puppet_join(puppet, "a", a, "room-a")
    big = join_request(a, "x" * 2000)
    puppet.emit("a", "jsongle", big)
    puppet.next("a", "disconnect", timeout=5)
    daemon.wait_for_line(rf"{a} disconnected", timeout=5)
    puppet_join(puppet, "b", b, "room-b")
    puppet.next("b", "ping", timeout=5)
    no_line(puppet, "b", "disconnect")


# -- python-socketio -------------------------------------------------------


class _PingCounter(logging.Handler):
    """python-engineio logs each packet it receives; count the PINGs."""

    def __init__(self, pings: "queue.Queue[None]") -> None:
        super().__init__(logging.INFO)
        self.pings = pings

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a foreign record: not ours to judge
            return
        if text.startswith("Received packet PING"):
            self.pings.put(None)


class PyClient:
    """A python-socketio Client (its own threads) with queued events."""

    def __init__(self) -> None:
        import socketio

        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.pings: queue.Queue[None] = queue.Queue()
        self._kept: list[tuple[str, Any]] = []
        logger = logging.getLogger(f"tests.engineio.{uuid.uuid4().hex}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(_PingCounter(self.pings))
        self.sio = socketio.Client(reconnection=False, engineio_logger=logger)
        self.sio.on("jsongle", lambda data: self.events.put(("jsongle", data)))
        self.sio.on("disconnect", lambda *args: self.events.put(("disconnect", args)))
        self.sio.on("connect_error", lambda data=None: self.events.put(("connect_error", data)))

    def connect(self, url: str, transports: list[str]) -> None:
        self.sio.connect(url, auth={"appToken": TOKEN}, transports=transports, wait_timeout=10)

    def next(self, kind: str, where: Callable[[Any], bool] | None = None, timeout: float = 10.0) -> Any:
        for index, (k, data) in enumerate(self._kept):
            if k == kind and (where is None or where(data)):
                return self._kept.pop(index)[1]
        deadline = time.monotonic() + timeout
        while True:
            try:
                k, data = self.events.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no {kind} within {timeout}s; got {self._kept}") from None
            if k == kind and (where is None or where(data)):
                return data
            self._kept.append((k, data))

    def kinds(self) -> list[str]:
        while True:
            try:
                self._kept.append(self.events.get_nowait())
            except queue.Empty:
                return [k for k, _ in self._kept]

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture
def py_clients():
    pytest.importorskip("socketio")
    clients: list[PyClient] = []

    def make() -> PyClient:
        client = PyClient()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    "transports, transport",
    [(["polling"], "polling"), (["websocket"], "websocket"), (["polling", "websocket"], "websocket")],
    ids=["polling", "websocket", "upgrade"],
)
def test_python_socketio_session(daemon_factory, py_clients, transports, transport):
    daemon = daemon_factory(FAST)
    client = py_clients()
    client.connect(daemon.ws_url, transports)
    assert client.sio.transport() == transport
    socket_id = client.sio.get_sid()
    assert socket_id and socket_id != client.sio.eio.sid
    assert not engineio_sid_known(daemon.ws_port, socket_id)
    if transport == "websocket":  # a GET would steal a polling client's poll
        assert engineio_sid_known(daemon.ws_port, client.sio.eio.sid)
    hello = client.next("jsongle", is_action("iq-get", query="session-hello"))
    check_hello(hello, socket_id)
    client.sio.emit("jsongle", hello_answer(hello, socket_id, {"uid": "py"}))
    ack = client.next("jsongle", is_action("ack"))
    assert ack["jsongle"] == {"action": "ack", "status": "success", "transaction": hello["jsongle"]["transaction"]}
    while not client.pings.empty():  # count only pings after the hello
        client.pings.get_nowait()
    for _ in range(3):
        client.pings.get(timeout=5)
    assert client.sio.connected and client.sio.transport() == transport
    request = join_request(socket_id, "py-room")
    client.sio.emit("jsongle", request)
    answer = client.next("jsongle", lambda m: m["jsongle"].get("transaction") == request["jsongle"]["transaction"])
    assert answer["jsongle"]["action"] == "iq-result"
    assert "disconnect" not in client.kinds()


def test_binary_attachment_over_polling(daemon_factory, puppet):
    daemon = daemon_factory()
    a = puppet_connect(puppet, "a", daemon, transports=["polling"], reconnection=False)["id"]
    puppet_hello(puppet, "a", a, "alice")
    # A Socket.IO BINARY_EVENT whose attachment travels base64 ("b...") in
    # the same polling payload: decoded and reassembled, then refused by
    # JSONgle as "no jsongle data" (the message is bytes, not an object).
    puppet.raw("a", '451-["jsongle",{"_placeholder":true,"num":0}]\x1ebAQID')
    error = puppet.next_jsongle("a", where=is_action("session-error"))
    assert error["jsongle"]["description"]["errorCode"] == 400002
    puppet_join(puppet, "a", a, "room-a")
    no_line(puppet, "a", "disconnect")


def test_a_polling_session_is_upgraded_by_one_websocket_only(daemon_factory):
    """The upgrade by hand: a WebSocket with the session's sid probes and takes
    it over; one arriving while a probe is under way, or after the upgrade, is
    opened and closed at once (what Engine.IO clients expect)."""
    daemon = daemon_factory()
    with urllib.request.urlopen(f"{daemon.ws_url}/socket.io/?EIO=4&transport=polling", timeout=10) as answer:
        sid = json.loads(answer.read().decode("utf-8")[1:])["sid"]
    path = f"/socket.io/?EIO=4&transport=websocket&sid={sid}"
    probe = WebSocketClient(daemon.ws_port, path)
    clients = [probe]
    try:
        during = WebSocketClient(daemon.ws_port, path)
        clients.append(during)
        during.next_close()
        probe.send(frame("2probe"))
        assert probe.next_frame().payload == b"3probe"
        probe.send(frame("5"))
        after = WebSocketClient(daemon.ws_port, path)
        clients.append(after)
        after.next_close()
        # The session now lives on the probe's WebSocket.
        probe.send(frame("40" + json.dumps({"appToken": TOKEN})))
        assert probe.next_frame().payload.startswith(b'40{"sid":')
        assert probe.next_frame().payload.startswith(b'42["jsongle",')
    finally:
        for client in clients:
            client.close()
