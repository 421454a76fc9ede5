"""The demo page's files: shipped in the package, served at /demo/ only with demo=true."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import pytest

from jsongle.demo import FILES

JS_DIR = Path(__file__).resolve().parent / "js"
STOCK_CLIENT = JS_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@pytest.mark.parametrize("name", list(FILES))
def test_files_are_found_through_the_package(name):
    # What a pip-installed package serves: the files come from the package, not the checkout.
    assert resources.files("jsongle.demo").joinpath(name).read_bytes()


def test_setup_cfg_ships_the_files_as_package_data():
    setup = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    patterns = re.search(r"^jsongle\.demo = (.*)$", setup, re.M).group(1).split(", ")
    for name in FILES:
        assert any(Path(name).match(p) for p in patterns), name


def test_vendored_client_is_the_stock_4_8_1_bundle_with_its_licence_header():
    vendored = resources.files("jsongle.demo").joinpath("socket.io.min.js").read_text()
    assert vendored.startswith("/*!\n * Socket.IO v4.8.1\n") and "Released under the MIT License" in vendored[:200]
    if not STOCK_CLIENT.is_file():
        pytest.skip("socket.io-client is not installed in tests/js (npm ci): cannot compare with the stock bundle")
    stock = STOCK_CLIENT.read_text()
    # Only the source-map comment is left out (its .map is not shipped).
    assert vendored == re.sub(r"\n//# sourceMappingURL=\S+\n?$", "\n", stock)


def test_page_loads_only_same_origin_files():
    page = resources.files("jsongle.demo").joinpath("index.html").read_text()
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert "demo.js" in urls and "socket.io.min.js" in urls
    for url in urls:
        # Relative to the page, or inline data (the empty favicon).
        assert url.startswith("data:") or ("//" not in url and ":" not in url), url


def test_demo_is_served_when_on(daemon_factory):
    daemon = daemon_factory({"demo": True})
    for name, content_type in FILES.items():
        status, headers, body = fetch(f"{daemon.ws_url}/demo/{name}")
        assert status == 200, name
        assert headers["content-type"] == content_type.decode()
        assert body == resources.files("jsongle.demo").joinpath(name).read_bytes()
        assert "connect-src 'self'" in headers["content-security-policy"]
    status, _, body = fetch(f"{daemon.ws_url}/demo/?room=r1&auto=1")
    assert status == 200 and b"demo.js" in body
    # /demo redirects to /demo/ with the query kept (the page's links are relative).
    status, _, body = fetch(f"{daemon.ws_url}/demo?room=r1&name=a")
    assert status == 200 and b"demo.js" in body
    # The bare address leads to the page too.
    status, _, body = fetch(f"{daemon.ws_url}/")
    assert status == 200 and b"demo.js" in body
    assert fetch(f"{daemon.ws_url}/demo/nothing.js")[0] == 404
    assert fetch(f"{daemon.ws_url}/demo/../setup.cfg")[0] == 404


def test_demo_is_absent_by_default(daemon_factory):
    daemon = daemon_factory()
    assert fetch(f"{daemon.ws_url}/demo/")[0] == 404
    assert fetch(f"{daemon.ws_url}/")[0] == 404
