"""The start-up note: the URLs to open and where the log goes, shown at any console level."""

from __future__ import annotations

from twisted.logger import LogLevel, PredicateResult

from jsongle.config import Config
from jsongle.logs import AtLeast
from jsongle.welcome import urls


def test_note_for_make_run():
    lines = urls(Config(demo=True), 8080, 8081)
    assert "demo page: open http://localhost:8080/demo/?room=demo&auto=1 in two browser tabs to make a call" in lines
    assert "REST and metrics: http://localhost:8081/health, /stats, /metrics" in lines
    assert (
        "log file: /tmp/jsongle-server.log (the default logPath, in /tmp; set logPath to move it):"
        " every level, debug included; the console shows warn and above (logDefaultLevel)"
    ) in lines
    moved = urls(Config(log_path="/var/log/jsongle.log", log_default_level="info"), 8080, 8081)
    assert "log file: /var/log/jsongle.log: every level, debug included; the console shows info and above (logDefaultLevel)" in moved


def test_note_names_the_bound_address_scheme_and_token():
    config = Config(demo=True, listen_address="::1", use_https=True, app_token="s3cret")
    lines = urls(config, 4443, None)
    assert "demo page: open https://[::1]:4443/demo/?room=demo&auto=1&token=<appToken> in two browser tabs to make a call" in lines
    assert not any("s3cret" in line for line in lines)
    assert not any(line.startswith("REST") for line in lines)


def test_without_demo_the_note_says_how_to_get_it():
    assert "no demo page (demo=false); set demo=true to serve one at /demo/" in urls(Config(), 8080, 8081)


def test_announced_events_pass_the_console_level():
    predicate = AtLeast(LogLevel.warn)
    info = {"log_level": LogLevel.info, "log_namespace": "jsongle.welcome"}
    assert predicate(info) == PredicateResult.no
    assert predicate({**info, "announce": True}) == PredicateResult.maybe
