"""A throw-away coturn (``turnserver``) on 127.0.0.1 for the relayed-call tests.

It runs the TURN REST API (``use-auth-secret`` with a ``static-auth-secret``),
relays on 127.0.0.1 only and lets loopback peers in (both browsers of a
test sit on 127.0.0.1), with no TLS, DTLS or CLI listener and its log in
the test's directory. Readiness is a STUN Binding answered over UDP.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from tests.support import processes

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ALLOCATE_REQUEST = 0x0003
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_ERROR = 0x0113
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, REALM, NONCE, REQUESTED_TRANSPORT = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015, 0x0019
UDP = 17


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (TURN listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def stun_binding(port: int, timeout: float = 0.5) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:port gets a success answer."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)
        try:
            udp.sendto(request, ("127.0.0.1", port))
            answer, _ = udp.recvfrom(2048)
        except OSError:
            return False
    if len(answer) < 20:
        return False
    kind, _length, cookie = struct.unpack("!HHI", answer[:8])
    return kind == BINDING_SUCCESS and cookie == MAGIC_COOKIE and answer[8:20] == transaction


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _attributes(body: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while len(body) >= 4:
        kind, length = struct.unpack("!HH", body[:4])
        found.setdefault(kind, body[4 : 4 + length])
        body = body[4 + length + (-length % 4) :]
    return found


def _stun(kind: int, transaction: bytes, attributes: bytes) -> bytes:
    return struct.pack("!HHI", kind, len(attributes), MAGIC_COOKIE) + transaction + attributes


def allocate(port: int, username: str, password: str, timeout: float = 2.0) -> int:
    """One TURN Allocate (RFC 5766) with long-term credentials over UDP.

    Returns 0 when coturn grants a relay, else the STUN error code of its
    answer (401: the credentials were refused). A second client of the
    same TURN server, independent of any browser: what it proves is that
    coturn accepts the username and password the signaling server hands out.
    """
    transport = _attribute(REQUESTED_TRANSPORT, struct.pack("!I", UDP << 24))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(timeout)

        def exchange(attributes: bytes) -> tuple[int, dict[int, bytes]]:
            transaction = os.urandom(12)
            udp.sendto(_stun(ALLOCATE_REQUEST, transaction, attributes), ("127.0.0.1", port))
            while True:
                answer, _ = udp.recvfrom(4096)
                if answer[8:20] == transaction:
                    return struct.unpack("!H", answer[:2])[0], _attributes(answer[20:])

        kind, found = exchange(transport)  # unauthenticated: 401 with realm and nonce
        if kind == ALLOCATE_SUCCESS:
            return 0
        realm, nonce = found.get(REALM, b""), found.get(NONCE, b"")
        key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
        attributes = _attribute(USERNAME, username.encode()) + _attribute(REALM, realm) + _attribute(NONCE, nonce) + transport
        transaction = os.urandom(12)
        # MESSAGE-INTEGRITY covers the header with a length that already counts it (24 bytes).
        header = struct.pack("!HHI", ALLOCATE_REQUEST, len(attributes) + 24, MAGIC_COOKIE) + transaction
        integrity = hmac.new(key, header + attributes, hashlib.sha1).digest()
        udp.sendto(header + attributes + _attribute(MESSAGE_INTEGRITY, integrity), ("127.0.0.1", port))
        while True:
            answer, _ = udp.recvfrom(4096)
            if answer[8:20] == transaction:
                break
    kind = struct.unpack("!H", answer[:2])[0]
    if kind == ALLOCATE_SUCCESS:
        return 0
    error = _attributes(answer[20:]).get(ERROR_CODE, b"\0\0\0\0")
    return (error[2] & 0x7) * 100 + error[3]


class TurnServer:
    """``turnserver`` started by a test and stopped by its PID."""

    REALM = "jsongle.test"

    def __init__(self, directory: Path, secret: str, realm: str = REALM, config_text: str | None = None) -> None:
        executable = shutil.which("turnserver")
        if executable is None:
            raise FileNotFoundError("turnserver")
        self.executable = executable
        self.directory = directory
        self.secret = secret
        self.realm = realm
        #: A turnserver.conf to run with (-c) instead of the REST options below;
        #: listening, relay and logging stay on the command line.
        self.config_text = config_text
        self.port = free_udp_tcp_port()
        # Relay ports: a random window, so parallel test runs rarely collide
        # (coturn skips a busy port anyway).
        self.min_port = random.randrange(20000, 59000, 100)
        self.max_port = self.min_port + 99
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "turnserver.log"

    @property
    def uri(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def stun_uri(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.config_text is not None:
            path = self.directory / "turnserver.conf"
            path.write_text(self.config_text, encoding="utf-8")
            head = [self.executable, "-c", str(path)]
        else:
            # No configuration file: everything is here.
            head = [self.executable, "-n", "--use-auth-secret", f"--static-auth-secret={self.secret}", f"--realm={self.realm}"]
        return head + [
            "--listening-ip=127.0.0.1",
            f"--listening-port={self.port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={self.min_port}",
            f"--max-port={self.max_port}",
            "--allow-loopback-peers",
            "--fingerprint",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-rfc5780",
            "--no-software-attribute",
            f"--userdb={self.directory / 'turndb'}",
            f"--pidfile={self.directory / 'turnserver.pid'}",
            f"--log-file={self.log_path}",
            "--simple-log",
            "--verbose",
        ]

    def start(self, timeout: float = 10.0) -> "TurnServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        command = self.command()
        output = open(self.directory / "turnserver.out", "ab")
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=str(self.directory)
        )
        output.close()
        deadline = time.monotonic() + timeout
        while not stun_binding(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"turnserver did not start:\n{self.log()}")
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not running"
        return self._proc.pid

    def stop(self) -> None:
        """SIGTERM to the PID we started, then SIGKILL if it lingers."""
        if self._proc is not None:
            processes.stop(self._proc)
        self._proc = None

    def log(self) -> str:
        parts = []
        for path in (self.directory / "turnserver.out", self.log_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)
