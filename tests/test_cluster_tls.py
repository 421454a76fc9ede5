"""The cluster's Redis link over TLS (rediss://) with an ACL user.

redis-server is started with a TLS port whose certificate a throwaway CA
signed, and a user allowed only jsongle's keys and channels; the daemons
reach it with ``rediss://user:password@...`` and ``redisCaFile``.
"""

from __future__ import annotations

import shutil
import socket

import pytest

from tests.support.redis import RedisServer, free_port
from tests.support.tls import write_ca_and_server
from tests.test_cluster_e2e import NODE_TIMEOUT, UNAVAILABLE
from tests.test_protocol_e2e import DATE, assert_quiet, call, connect, event, iq_error, join, relayed

PASSWORD = "s3cret-Redis-pw"


@pytest.fixture
def tls_redis(tmp_path):
    """redis-server: plain port for the test's own checks, a TLS port for the daemons."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package: redis-server); .ci/run installs it")
    ca, key, cert = write_ca_and_server(tmp_path / "pki")
    tls_port = free_port()
    server = RedisServer(tmp_path / "redis", extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        "--user", "jsongle", "on", f">{PASSWORD}", "~jsongle:*", "&jsongle:*", "+@all",
    ))
    server.start()
    server.tls_port = tls_port  # type: ignore[attr-defined]
    server.ca = ca  # type: ignore[attr-defined]
    yield server
    server.stop()


def client_users(redis: RedisServer) -> list[str]:
    """The ``user=`` of every connection Redis has (CLIENT LIST, read whole)."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as conn:
        conn.sendall(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n")
        data = b""
        while True:
            data += conn.recv(65536)
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                break
    text = rest[: int(header[1:])].decode()
    return [field.split("=", 1)[1] for line in text.splitlines() for field in line.split() if field.startswith("user=")]


def test_cluster_over_rediss_with_an_acl_user(tls_redis, daemon_factory, puppet):
    url = f"rediss://jsongle:{PASSWORD}@127.0.0.1:{tls_redis.tls_port}/0"
    nodes = [
        daemon_factory({"redisUrl": url, "redisCaFile": tls_redis.ca, "nodeId": f"node{n}", "nodeTimeout": f"{NODE_TIMEOUT}s"})
        for n in (1, 2)
    ]
    alice = connect(puppet, nodes[0], "alice", "alice")
    bob = connect(puppet, nodes[1], "bob", "bob")

    def joined() -> bool:
        request = alice.iq_set("session-join", {"rid": "r1"})
        answer = alice.receive()
        if answer["jsongle"]["action"] == "iq-error":
            assert answer == iq_error(request, 503001, UNAVAILABLE)
            return False
        return True

    from tests.test_cluster_e2e import poll

    poll(joined, 10, "node 1 on Redis over TLS")
    join(bob, "r1", members=(alice,))
    assert alice.receive() == event(alice, "room", "joined", {"member": bob.identity, "rid": "r1"})
    message = alice.send("r1", call("session-info"))
    assert bob.receive() == relayed(message, "r1", bob, {"sdp": "v=0", "sent": DATE, "relayed": DATE})
    assert_quiet(alice, bob)
    # Four connections (two per node), all as the ACL user.
    assert sorted(client_users(tls_redis)).count("jsongle") == 4
    for daemon in nodes:
        assert PASSWORD not in daemon.output()
        assert PASSWORD not in daemon.log_path.read_text() if daemon.log_path.exists() else True


@pytest.mark.parametrize("problem", ["wrong password", "unknown CA"])
def test_a_bad_password_or_an_untrusted_certificate_keeps_rooms_unavailable(tls_redis, daemon_factory, puppet, tmp_path, problem):
    password = "not-the-password" if problem == "wrong password" else PASSWORD
    ca = tls_redis.ca
    if problem == "unknown CA":
        ca, _, _ = write_ca_and_server(tmp_path / "other")
    url = f"rediss://jsongle:{password}@127.0.0.1:{tls_redis.tls_port}/0"
    daemon = daemon_factory({"redisUrl": url, "redisCaFile": ca, "nodeId": "node1"})
    daemon.wait_for_line("redis command connection failed")
    alice = connect(puppet, daemon, "alice", "alice")
    request = alice.iq_set("session-join", {"rid": "r1"})
    assert alice.receive() == iq_error(request, 503001, UNAVAILABLE)
    assert password not in daemon.output()
    reason = "WRONGPASS" if problem == "wrong password" else "certificate verify failed"
    assert reason in daemon.output()
