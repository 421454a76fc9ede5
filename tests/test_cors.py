"""CORS for polling and the WebSocket Origin check, against the real daemon."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import websocket

ALLOWED = "https://app.example"


def _get(url: str, origin: str | None = None, method: str = "GET", headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
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
    assert headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    status, _, _ = _get(f"{cors_daemon.ws_url}/socket.io/?EIO=4&transport=polling", "https://evil.example", "OPTIONS")
    assert status == 403


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


def test_without_cors_config_any_origin_is_answered(daemon_factory):
    """Empty corsPolicyOrigin: the request's Origin is answered, with credentials, as socket.io's
    ``cors: {origin: true, credentials: true}`` would; a request without Origin gets no CORS header."""
    daemon = daemon_factory()
    url = f"{daemon.ws_url}/socket.io/?EIO=4&transport=polling"
    for origin in ("https://app.example", "http://127.0.0.1:9", "null"):
        status, headers, body = _get(url, origin)
        assert status == 200 and body.startswith(b'0{"sid":')
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert headers["Vary"] == "Origin"
    status, headers, _ = _get(url)
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-requested-with"}
    status, headers, body = _get(url, ALLOWED, "OPTIONS", asked)
    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
    assert headers["Access-Control-Allow-Headers"] == "content-type,x-requested-with"
    assert headers["Vary"] == "Origin, Access-Control-Request-Headers"


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
