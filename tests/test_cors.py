"""CORS for polling and the WebSocket Origin check, against the real daemon."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import websocket

ALLOWED = "https://app.example"


def _get(url: str, origin: str | None = None, method: str = "GET"):
    request = urllib.request.Request(url, method=method)
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def cors_daemon(daemon_factory):
    return daemon_factory({"corsPolicyOrigin": f"{ALLOWED}, https://other.example"})


def test_polling_handshake_echoes_an_allowed_origin(cors_daemon):
    status, headers, body = _get(f"{cors_daemon.ws_url}/socket.io/?EIO=4&transport=polling", ALLOWED)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert body.startswith(b'0{"sid":')


def test_preflight_lists_methods(cors_daemon):
    status, headers, _ = _get(f"{cors_daemon.ws_url}/socket.io/?EIO=4&transport=polling", ALLOWED, "OPTIONS")
    assert status == 204
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_polling_from_another_origin_is_forbidden(cors_daemon):
    status, headers, body = _get(f"{cors_daemon.ws_url}/socket.io/?EIO=4&transport=polling", "https://evil.example")
    assert status == 403
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"code": 4, "message": "Forbidden"}


def test_websocket_origin_is_checked(cors_daemon):
    url = f"ws://127.0.0.1:{cors_daemon.ws_port}/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, origin="https://evil.example", timeout=10)
    assert refused.value.status_code == 403
    ws = websocket.create_connection(url, origin=ALLOWED, timeout=10)
    try:
        assert ws.recv().startswith('0{"sid":')
    finally:
        ws.close()


def test_without_cors_config_no_cors_headers(daemon_factory):
    daemon = daemon_factory()
    status, headers, _ = _get(f"{daemon.ws_url}/socket.io/?EIO=4&transport=polling", ALLOWED)
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers


@pytest.mark.parametrize(
    "query, code",
    [
        ("EIO=3&transport=polling", 5),
        ("transport=polling", 5),
        ("EIO=4&transport=carrier-pigeon", 0),
        ("EIO=4&transport=polling&sid=nope", 1),
    ],
)
def test_engineio_errors_are_json(daemon_factory, query, code):
    daemon = daemon_factory()
    status, headers, body = _get(f"{daemon.ws_url}/socket.io/?{query}")
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["code"] == code
