"""A web app on another origin reaches the daemon from headless Chromium.

The page is served by a second small HTTP server on another 127.0.0.1 port
and loads the stock socket.io-client bundle; it connects with the default
transports (long-polling, then the upgrade to WebSocket), so the browser's
CORS checks on the polling requests decide.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support.browser_parity import StaticSite, chromium_missing, run_pages

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")


@pytest.fixture
def site():
    with StaticSite({"/app.html": HERE / "browser" / "cross_origin.html", "/socket.io.min.js": BUNDLE}) as served:
        yield served


def _open(site: StaticSite, daemon) -> dict:
    query = urlencode({"server": daemon.ws_url, "token": "test-token"})
    return run_pages([("app", site.url(f"/app.html?{query}"))], timeout=30).results["app"]


def test_any_origin_with_an_empty_cors_policy(daemon_factory, site):
    daemon = daemon_factory({"corsPolicyOrigin": ""})
    assert site.origin != daemon.ws_url
    result = _open(site, daemon)
    assert "error" not in result, result
    assert result["transports"] == ["polling", "websocket"]
    assert result["hello"] == "success"


def test_a_listed_origin_only(daemon_factory, site):
    daemon = daemon_factory({"corsPolicyOrigin": "https://other.example"})
    result = _open(site, daemon)
    assert result["error"] == "xhr poll error"
    assert "hello" not in result
    listed = daemon_factory({"corsPolicyOrigin": f"https://other.example, {site.origin}"})
    result = _open(site, listed)
    assert result["transports"] == ["polling", "websocket"] and result["hello"] == "success"
