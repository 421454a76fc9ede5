"""The log file (rotation, devices), masking, and no personal data in the
running daemon's logs."""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, LogPublisher, Logger

from jsongle.logfile import MASK, FileLogObserver, LogFile, MaskingObserver, event_line, mask_event
from jsongle.logs import ConsoleLevel
from tests.test_protocol_e2e import SERVER_ID, TOKEN, Client, answer_hello

# -- LogFile ---------------------------------------------------------------


def no_failure(what: str, error: str, warn: bool = True) -> None:
    raise AssertionError(f"unexpected {what} failure: {error}")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_buffered_until_the_flush_timer(tmp_path):
    clock = Clock()
    path = tmp_path / "jsongle.log"
    logfile = LogFile(str(path), 60, 3, clock, no_failure, flush_interval=1.0)
    logfile.open()
    logfile.write('{"n": 1}\n')
    assert path.read_text() == ""
    clock.advance(1.0)
    assert path.read_text() == '{"n": 1}\n'
    logfile.write('{"n": 2}\n')
    logfile.close()
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n'
    logfile.write('{"n": 3}\n')  # after close: dropped
    assert not clock.getDelayedCalls()


def test_rotation_keeps_log_files_number(tmp_path):
    clock = Clock()
    path = tmp_path / "jsongle.log"
    logfile = LogFile(str(path), 10, 3, clock, no_failure)
    logfile.open()
    for period in range(6):
        logfile.write(f"period {period}\n")
        clock.advance(10)
    logfile.write("period 6\n")
    logfile.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "jsongle.log",
        "jsongle.log.1",
        "jsongle.log.2",
        "jsongle.log.3",
    ]
    assert path.read_text() == "period 6\n"
    assert (tmp_path / "jsongle.log.1").read_text() == "period 5\n"
    assert (tmp_path / "jsongle.log.3").read_text() == "period 3\n"


def test_rotation_with_no_old_files_kept(tmp_path):
    clock = Clock()
    path = tmp_path / "jsongle.log"
    logfile = LogFile(str(path), 10, 0, clock, no_failure)
    logfile.open()
    logfile.write("old\n")
    clock.advance(10)
    logfile.write("new\n")
    logfile.close()
    assert [p.name for p in tmp_path.iterdir()] == ["jsongle.log"]
    assert path.read_text() == "new\n"


def test_dev_null_stays_a_device(tmp_path):
    clock = Clock()
    logfile = LogFile(os.devnull, 1, 2, clock, no_failure)
    logfile.open()
    for _ in range(4):
        logfile.write("line\n")
        clock.advance(1)
        logfile.rotate()
    logfile.close()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not os.path.exists(os.devnull + ".1")


def test_fifo_is_never_renamed(tmp_path):
    fifo = tmp_path / "jsongle.log"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    clock = Clock()
    logfile = LogFile(str(fifo), 1, 2, clock, no_failure)
    logfile.open()
    for n in range(3):
        logfile.write(f"line {n}\n")
        clock.advance(1)
    logfile.close()
    reader.join(timeout=5)
    assert received == [b"line 0\nline 1\nline 2\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jsongle.log"]


def test_reopen_follows_an_external_rename(tmp_path):
    clock = Clock()
    path = tmp_path / "jsongle.log"
    logfile = LogFile(str(path), 60, 3, clock, no_failure)
    logfile.open()
    logfile.write("before\n")
    logfile.flush()
    path.rename(tmp_path / "rotated.log")
    logfile.reopen()
    logfile.write("after\n")
    logfile.close()
    assert (tmp_path / "rotated.log").read_text() == "before\n"
    assert path.read_text() == "after\n"


# -- masking ---------------------------------------------------------------


def test_mask_event_fields_text_and_secrets():
    message = {"jsongle": {"action": "session-text", "description": {"content": "secret words", "dn": "Zoé"}}}
    event = {
        "log_format": "got {message} from {who} token={token} raw={raw}",
        "log_level": LogLevel.debug,
        "log_namespace": "test",
        "log_time": 0.0,
        "message": message,
        "who": [{"uid": "u1", "dn": "Zoé"}],
        "token": "app-secret",
        "raw": json.dumps({"additionalContent": "more words"}),
        "dn": "Zoé",
    }
    masked = mask_event(event, ["app-secret"])
    line = event_line(masked)
    for clear in ("secret words", "Zoé", "Zo\\u00e9", "app-secret", "more words"):
        assert clear not in line
    assert "u1" in line and "session-text" in line and MASK in line
    assert message["jsongle"]["description"]["content"] == "secret words"  # the original is untouched
    record = json.loads(line)
    assert record["level"] == "debug" and record["namespace"] == "test"
    assert record["time"] == "1970-01-01T00:00:00.000Z"


def test_mask_per_user_tokens():
    """A JWT never reaches a log, whatever field or text carries it."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    event = {
        "log_format": "CONNECT {auth} header={header}",
        "log_level": LogLevel.debug,
        "log_namespace": "test",
        "log_time": 0.0,
        "auth": {"token": token, "resume": True},
        "header": f"Bearer {token}",
        "servers": [{"username": "1:u", "credential": "hmac"}],
    }
    masked = mask_event(event)
    line = event_line(masked)
    assert token not in line and "eyJzdWIi" not in line
    assert masked["auth"] == {"token": MASK, "resume": True}
    assert masked["servers"] == [{"username": "1:u", "credential": MASK}]
    assert "Bearer ***" in line


def test_console_level_masks_before_every_observer(tmp_path):
    publisher = LogPublisher()
    console: list[dict] = []
    publisher.addObserver(console.append)
    clock = Clock()
    logfile = LogFile(str(tmp_path / "jsongle.log"), 60, 3, clock, no_failure)
    level = ConsoleLevel("info", publisher, secrets=["tok"])
    level.install(also=[FileLogObserver(logfile)])
    log = Logger(namespace="test", observer=publisher)
    log.debug("hello {description}", description={"uid": "u", "dn": "Alice"})
    log.info("token {t}", t="tok")
    logfile.close()
    level.uninstall()
    assert [e["log_level"] for e in console] == [LogLevel.info]  # debug is off on the console
    assert "tok" not in json.dumps([e.get("t") for e in console])
    text = (tmp_path / "jsongle.log").read_text(encoding="utf-8")
    assert "Alice" not in text and "tok" not in text
    assert [r["level"] for r in lines(tmp_path / "jsongle.log")] == ["debug", "info"]


# -- the running daemon ----------------------------------------------------


def hello(puppet, daemon, name: str, uid: str, dn: str) -> Client:
    puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False)
    client = Client(puppet, name, puppet.next(name, "connect")["id"])
    client.hello = client.receive()
    answer_hello(client, client.hello, {"uid": uid, "dn": dn})
    assert client.receive()["jsongle"]["status"] == "success"
    client.uid = uid
    return client


def test_no_personal_data_in_daemon_logs(daemon_factory, puppet):
    daemon = daemon_factory({"logDefaultLevel": "debug"})
    dn_alice = f"Alice-{uuid.uuid4().hex[:8]}"
    dn_bob = f"Bob-{uuid.uuid4().hex[:8]}"
    content = f"content-{uuid.uuid4().hex}"
    alice = hello(puppet, daemon, "alice", "alice", dn_alice)
    bob = hello(puppet, daemon, "bob", "bob", dn_bob)
    alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive()["jsongle"]["action"] == "iq-result"
    bob.iq_set("session-join", {"rid": "r1"})
    assert bob.receive()["jsongle"]["action"] == "iq-result"
    assert alice.receive()["jsongle"]["event"] == "joined"
    alice.send("r1", {"action": "session-text", "namespace": "room", "description": {"content": content}})
    relayed = bob.receive()
    assert relayed["jsongle"]["description"]["content"] == content
    code = daemon.stop()
    assert code is not None
    text = daemon.log_path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    assert any(r["level"] == "debug" or r["level"] == "info" for r in records)
    for where, logged in (("file", text), ("stdout", daemon.output())):
        for clear in (dn_alice, dn_bob, content, TOKEN):
            assert clear not in logged, f"{clear!r} in the {where} log"
    assert SERVER_ID  # the log is about this server


def test_event_line_formats_like_twisted_and_survives_any_text():
    from twisted.logger import LogLevel, formatEvent

    from jsongle.logfile import event_line, format_event

    event = {"log_format": "{a!r} and {b.real} {c()}", "a": "x", "b": 3, "c": lambda: "called", "log_level": LogLevel.info,
             "log_namespace": "n", "log_time": 1_700_000_000.5}
    assert format_event(event) == formatEvent(event) == "'x' and 3 called"  # the call syntax goes to Twisted
    assert format_event({"log_format": "{missing}"}) == formatEvent({"log_format": "{missing}"})
    line = json.loads(event_line(event))
    assert line == {"time": "2023-11-14T22:13:20.500Z", "level": "info", "namespace": "n", "text": "'x' and 3 called"}
    lone = json.loads(event_line({"log_format": "{uid}", "uid": "\ud800"}))  # no UTF-8 for it: escaped, not lost
    assert lone["text"] == "\ud800"


def test_the_console_filter_decides_as_twisteds_with_one_level():
    from twisted.logger import LogLevel, LogLevelFilterPredicate

    from jsongle.logs import AtLeast

    events = [
        {"log_level": level, "log_namespace": namespace}
        for level in LogLevel.iterconstants()
        for namespace in ("jsongle.signaling.application", "x", "", None)
    ] + [{"log_namespace": "x"}, {}]
    for level in LogLevel.iterconstants():
        theirs = LogLevelFilterPredicate(defaultLogLevel=level)
        assert [AtLeast(level)(event) for event in events] == [theirs(event) for event in events]


def test_a_failed_write_is_counted_every_time_and_said_once(tmp_path):
    """A full disk must not take the server down, nor fail silently."""
    clock = Clock()
    reports: list[tuple[str, bool]] = []
    logfile = LogFile(str(tmp_path / "jsongle.log"), 60, 3, clock, lambda what, error, warn=True: reports.append((what, warn)))
    logfile.open()

    class Full:
        def write(self, text: str) -> None:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    real, logfile._file = logfile._file, Full()
    for _ in range(3):
        logfile.write("x\n")
        logfile.flush()
    assert reports == [("log write", True), ("log write", False), ("log write", False)]
    logfile._file = real
    logfile.write("y\n")
    logfile.flush()
    logfile._file = Full()
    logfile.write("z\n")
    logfile.flush()
    assert reports[-1] == ("log write", True)  # said again after a write succeeded
    logfile._file = real
    logfile.close()


# -- the console at start, as documented ------------------------------------


def test_console_at_warn_shows_no_info_line_at_start_and_the_file_has_them(daemon_factory):
    """logDefaultLevel=warn: twistd's banner and "listening on" stay off the
    console (only warnings and worse); the log file gets every level."""
    import re
    import time

    from tests.support.redis import free_port

    ws_port, rest_port = free_port(), free_port()
    daemon = daemon_factory({"logDefaultLevel": "warn", "appToken": "", "wsPort": ws_port, "restPort": rest_port}, wait=False)
    deadline = time.monotonic() + 20
    texts: list[str] = []
    while not any(f"rest listening on 127.0.0.1:{rest_port}" in t for t in texts):
        assert daemon.returncode is None and time.monotonic() < deadline, daemon.output()
        time.sleep(0.1)
        if daemon.log_path.exists():
            texts = [record.get("text", "") for record in lines(daemon.log_path)]
    # The warning (an empty appToken) reaches the console: it is not silent.
    daemon.wait_for_line(r"#warn\] appToken is empty")
    console = daemon.lines()
    assert [line for line in console if re.search(r"#(info|debug)\]", line)] == [], console
    assert not any("starting up" in line or "listening on" in line for line in console), console
    assert any(re.match(r"twistd .* starting up", t) for t in texts), texts
    assert f"websocket listening on 127.0.0.1:{ws_port}" in texts
    levels = {record["level"] for record in lines(daemon.log_path)}
    assert {"info", "warn"} <= levels


def test_a_start_error_still_reaches_the_console_at_error_level(tmp_path):
    """The level filter is in place before the listeners open: a port in use
    at logDefaultLevel=error is still shown on the console."""
    import socket

    from tests.support.daemon import run_expecting_failure

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        code, output = run_expecting_failure(tmp_path, {"logDefaultLevel": "error", "wsPort": port})
    finally:
        holder.close()
    assert code != 0
    assert f"bad configuration: wsPort: {port} is already in use" in output, output
    assert "starting up" not in output
