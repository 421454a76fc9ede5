"""The operations files in etc/ work with the real tools.

- ``etc/jsongle.service`` and the template ``etc/jsongle@.service`` (and an
  instance of it) pass ``systemd-analyze verify``.
- Both nginx examples pass ``nginx -t``.  The ``location /socket.io/`` of
  ``etc/nginx-jsongle.conf``, put in front of the real daemon by a real
  nginx, carries a default socket.io-client (long-polling, then the upgrade
  to WebSocket) through the session-hello; with the sticky upstream of
  ``etc/nginx-jsongle-cluster.conf`` in front of two clustered daemons, two
  such clients set up a call.

Each test is skipped, saying why, when its tool is not installed (``.ci/run``
installs them when it can).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT = REPO_ROOT / "etc" / "jsongle.service"
TEMPLATE_UNIT = REPO_ROOT / "etc" / "jsongle@.service"
NGINX_EXAMPLE = REPO_ROOT / "etc" / "nginx-jsongle.conf"
NGINX_CLUSTER_EXAMPLE = REPO_ROOT / "etc" / "nginx-jsongle-cluster.conf"
SHIPPED_TWISTD = "/opt/jsongle/venv/bin/twistd"
TOKEN = "test-token"  # the harness's default appToken
SERVER_ID = "jsongle-server"
# nginx's temporary directories, kept in the test's directory.
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (not on a non-root user's PATH on Debian)."""
    found = shutil.which(name)
    if found is None and os.access(f"/usr/sbin/{name}", os.X_OK):
        found = f"/usr/sbin/{name}"
    return found


# -- systemd ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("shipped", "verified"),
    [(UNIT, UNIT.name), (TEMPLATE_UNIT, TEMPLATE_UNIT.name), (TEMPLATE_UNIT, "jsongle@8080.service")],
)
def test_systemd_unit_verifies(tmp_path, shipped, verified):
    analyze = find_tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    twistd = Path(sys.executable).with_name("twistd")
    assert twistd.is_file(), f"no twistd beside {sys.executable}"
    text = shipped.read_text(encoding="utf-8")
    assert f"ExecStart={SHIPPED_TWISTD} " in text
    # verify checks that ExecStart's binary exists: point it at this venv's.
    # An instance name (jsongle@8080) is loaded from the template beside it.
    unit = tmp_path / shipped.name
    unit.write_text(text.replace(SHIPPED_TWISTD, str(twistd)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / verified)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    output = (result.stdout + result.stderr).splitlines()
    # No line is filtered: with systemd 252 (Debian 12) verify prints nothing
    # for this unit. Should a harmless line appear on another systemd (say
    # about a unit the host lacks), filter it here by exact text, with why.
    assert result.returncode == 0, "\n".join(output)
    assert output == [], "\n".join(output)


# -- nginx ------------------------------------------------------------------


def config_block(text: str, opening: str) -> str:
    """The block of *text* that starts at the line ``opening {`` (braces
    balanced, comments dropped)."""
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    code = "\n".join(lines)
    match = re.search(rf"^\s*{re.escape(opening)}\s*\{{", code, re.MULTILINE)
    assert match, f"no `{opening} {{` in {NGINX_EXAMPLE.name}"
    depth = 0
    for index in range(match.end() - 1, len(code)):
        if code[index] == "{":
            depth += 1
        elif code[index] == "}":
            depth -= 1
            if depth == 0:
                return code[match.start() : index + 1].strip()
    raise AssertionError(f"`{opening}` is not closed in {NGINX_EXAMPLE.name}")


def error_log_args(nginx: str, path: Path) -> list[str]:
    """``-e path`` (nginx >= 1.19.5): log start-up errors there, not in the
    system's log directory."""
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=30).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    if match and tuple(map(int, match.groups())) >= (1, 19, 5):
        return ["-e", str(path)]
    return []


def free_port() -> int:
    """A port that was free a moment ago (nginx binds it next; retried once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_config(directory: Path, nginx_port: int, upstream_ports: list[int], example_path: Path = NGINX_EXAMPLE) -> str:
    """A plain-HTTP nginx on 127.0.0.1 in front of jsongle, with the example's
    own ``map`` and ``location /socket.io/`` blocks and its upstream's
    balancing directives, everything in *directory*."""
    example = example_path.read_text(encoding="utf-8")
    upstream = config_block(example, "upstream jsongle")
    balancing = [line.strip() for line in upstream.splitlines()[1:-1] if line.strip() and not line.strip().startswith("server ")]
    servers = [f"server 127.0.0.1:{port};" for port in upstream_ports]
    upgrade_map = config_block(example, "map $http_upgrade $jsongle_connection_upgrade")
    location = config_block(example, "location /socket.io/")
    for directive in (
        "proxy_pass http://jsongle;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $jsongle_connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_buffering off;",
    ):
        assert directive in location, f"{directive!r} missing from location /socket.io/"
    # Workers run as the current user; as root nginx would switch to nobody,
    # which cannot use the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / (kind + '_temp')};"
        for kind in TEMP_KINDS
    )
    return f"""{user}daemon off;
worker_processes 1;
pid {directory / 'nginx.pid'};
error_log {directory / 'error.log'} info;
events {{
    worker_connections 64;
}}
http {{
    access_log {directory / 'access.log'};
{temp}
    {upgrade_map}
    upstream jsongle {{
        {" ".join(balancing + servers)}
    }}
    server {{
        listen 127.0.0.1:{nginx_port};
        server_name localhost;
        {location}
    }}
}}
"""


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> bool:
    """True once *port* accepts connections; False if nginx exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port} within {timeout}s")


def stop_by_pid(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGQUIT)  # graceful: finish, write the access log
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def nginx_factory(tmp_path):
    """``start(upstream_ports, example) -> (process, port, directory)``: nginx with
    the example's proxy directives in front of *upstream_ports* (one port or a
    list); stopped by PID at teardown,
    its error log printed (shown by pytest when the test fails)."""
    nginx = find_tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package: nginx)")
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(upstream_ports: Any, example: Path = NGINX_EXAMPLE) -> tuple[subprocess.Popen[bytes], int, Path]:
        if isinstance(upstream_ports, int):
            upstream_ports = [upstream_ports]
        for attempt in (1, 2):  # the free port may be taken meanwhile: once more
            directory = tmp_path / f"nginx{attempt}"
            directory.mkdir()
            port = free_port()
            conf = directory / "nginx.conf"
            error_log = error_log_args(nginx, directory / "error.log")
            conf.write_text(nginx_config(directory, port, upstream_ports, example), encoding="utf-8")
            test = subprocess.run(
                [nginx, "-t", "-p", str(directory), *error_log, "-c", str(conf)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert test.returncode == 0, test.stderr + "\n" + conf.read_text()
            proc = subprocess.Popen(
                [nginx, "-p", str(directory), *error_log, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
            )
            started.append((proc, directory))
            if wait_listening(proc, port):
                return proc, port, directory
        raise AssertionError("nginx exited at start twice:\n" + (directory / "error.log").read_text())

    yield start
    for proc, directory in started:
        stop_by_pid(proc)
        log = directory / "error.log"
        print(f"--- nginx pid {proc.pid} exited {proc.returncode} ---")
        if log.exists():
            print(log.read_text(errors="replace"))


@pytest.mark.parametrize("example", [NGINX_EXAMPLE, NGINX_CLUSTER_EXAMPLE], ids=lambda p: p.name)
def test_nginx_example_is_valid(tmp_path, example):
    """The whole example, as a site inside a minimal nginx.conf, passes
    ``nginx -t`` (its placeholder certificate paths swapped for a throwaway
    self-signed pair)."""
    nginx = find_tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package: nginx)")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = example.read_text(encoding="utf-8")
    site, certs = re.subn(r"^(\s*ssl_certificate)\s+\S+;", rf"\1 {cert};", site, flags=re.MULTILINE)
    site, keys = re.subn(r"^(\s*ssl_certificate_key)\s+\S+;", rf"\1 {key};", site, flags=re.MULTILINE)
    assert (certs, keys) == (1, 1)
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"{kind}_temp_path {tmp_path / (kind + '_temp')};" for kind in TEMP_KINDS)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{temp}\n{site}\n}}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), *error_log_args(nginx, tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def jsongle_action(action: str, **fields: Any):
    def match(message: dict[str, Any]) -> bool:
        jsongle = message.get("jsongle") or {}
        return jsongle.get("action") == action and all(jsongle.get(k) == v for k, v in fields.items())

    return match


def test_socketio_client_through_nginx(daemon_factory, puppet, nginx_factory):
    daemon = daemon_factory({"pingInterval": 300, "pingTimeout": 200})
    nginx, port, directory = nginx_factory(daemon.ws_port)

    # Default transports: polling first, then the upgrade through the proxy.
    puppet.connect("a", f"http://127.0.0.1:{port}", auth={"appToken": TOKEN})
    socket_id = puppet.next("a", "connect")["id"]
    assert puppet.next("a", "upgrade")["transport"] == "websocket"

    hello = puppet.next_jsongle("a", where=jsongle_action("iq-get", query="session-hello"))
    assert hello["to"] == socket_id
    transaction = hello["jsongle"]["transaction"]
    puppet.emit(
        "a",
        "jsongle",
        {
            "id": str(uuid.uuid4()),
            "from": socket_id,
            "to": SERVER_ID,
            "jsongle": {
                "action": "iq-result",
                "query": "session-hello",
                "transaction": transaction,
                "description": {"uid": "alice", "dn": "Alice"},
            },
        },
    )
    ack = puppet.next_jsongle("a", where=jsongle_action("ack"))
    assert ack["jsongle"] == {"action": "ack", "status": "success", "transaction": transaction}
    # Heartbeats (300 ms) pass over the proxied WebSocket.
    for _ in range(2):
        puppet.next("a", "ping", timeout=5)
    assert not [line for line in puppet.pending("a") if line.get("type") in ("disconnect", "connect_error")]
    puppet.close("a")
    puppet.next("a", "disconnect", timeout=5)

    # It went through nginx: polling requests, and the WebSocket (101, logged
    # when it closes, so after nginx stopped).
    stop_by_pid(nginx)
    access = (directory / "access.log").read_text(errors="replace")
    assert re.search(r'"GET /socket\.io/\?EIO=4&transport=polling[^"]*" 200 ', access), access
    assert re.search(r'"GET /socket\.io/\?EIO=4&transport=websocket[^"]*" 101 ', access), access


def test_cluster_through_sticky_nginx(redis_server, daemon_factory, puppet, nginx_factory):
    """Two clustered daemons behind the cluster example's sticky upstream:
    long-polling sessions stay on their process, and a MUC spans both."""
    from tests.test_cluster_e2e import wait_joined
    from tests.test_protocol_e2e import DATE, connect, event, join, relayed

    config = {"redisUrl": redis_server.url, "pingInterval": 300, "pingTimeout": 200}
    node1 = wait_joined(daemon_factory({**config, "nodeId": "node1"}))
    node2 = wait_joined(daemon_factory({**config, "nodeId": "node2"}))
    nginx, port, directory = nginx_factory([node1.ws_port, node2.ws_port], NGINX_CLUSTER_EXAMPLE)
    proxy = type("Proxy", (), {"ws_url": f"http://127.0.0.1:{port}"})()
    alice = connect(puppet, proxy, "alice", "alice")
    assert puppet.next("alice", "upgrade")["transport"] == "websocket"
    carol = connect(puppet, node1, "carol", "carol")
    bob = connect(puppet, node2, "bob", "bob")
    rid = "#muc#ops"
    join(alice, rid, "muc-join")
    join(bob, rid, "muc-join", members=(alice,))
    assert alice.receive() == event(alice, "muc", "joined", {"member": bob.identity, "rid": rid})
    join(carol, rid, "muc-join", members=(alice, bob))
    for member in (alice, bob):
        assert member.receive() == event(member, "muc", "joined", {"member": carol.identity, "rid": rid})
    message = alice.send(rid, {"action": "session-custom", "namespace": "muc", "description": {"x": 1}})
    for member in (bob, carol):
        assert member.receive() == relayed(message, f"{rid}/alice", member, {"x": 1, "sent": DATE, "relayed": DATE})
    # Heartbeats keep passing: the session never met the other process.
    for _ in range(2):
        puppet.next("alice", "ping", timeout=5)
    assert not [line for line in puppet.pending("alice") if line.get("type") in ("disconnect", "connect_error")]
    stop_by_pid(nginx)
    access = (directory / "access.log").read_text(errors="replace")
    assert re.search(r'"GET /socket\.io/\?EIO=4&transport=polling[^"]*" 200 ', access), access
