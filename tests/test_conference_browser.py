"""The demo page's conference mode in headless Chromium (PROTOCOL.md §14).

Demo pages in one MUC room with ``auto=1`` make a mesh: the newcomer calls
each member already there, one peer connection per pair. Three pages reach
``peers=2`` with remote video decoded in every tile; one closes and the two
others drop to ``peers=1``; another joins (three members, ``peers=2``) and
one more (four members: all reach ``peers=3``). ``jsongle_conference_calls``
follows the pairs (0, 1, 3, 1, 3, 6, then 0) and ``p2p_count`` stays 0.
State is read from ``document.body.dataset``, the video elements and getStats.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.browser import why_unavailable
from tests.test_cluster_e2e import poll
from tests.test_conference_e2e import call_gauges
from tests.test_demo_browser import demo_daemon, demo_url  # noqa: F401 (fixture)

ROOM = "#muc#mesh"


def every_tile_decodes(others: int) -> str:
    """A page expression: ``others`` remote tiles, each playing decoded video,
    and as many inbound video streams with decoded frames (getStats)."""
    return (
        "(async () => {"
        " const videos = [...document.querySelectorAll('video.remote')];"
        " const frames = Object.values(await window.framesDecoded());"
        f" return videos.length === {others} && frames.length === {others}"
        " && videos.every(v => !v.paused && v.getVideoPlaybackQuality().totalVideoFrames > 0)"
        " && frames.every(n => n > 0);"
        "})()"
    )


def in_mesh(page: Any, others: int, timeout: float = 45) -> None:
    page.wait_for(
        f"document.body.dataset.peers === '{others}' && document.body.dataset.members === '{others + 1}'"
        " && document.body.dataset.state === 'in-call'",
        timeout=timeout,
    )
    page.wait_for(every_tile_decodes(others), timeout=timeout)


def gauges_become(daemon: Any, conference: float) -> None:
    poll(lambda: call_gauges(daemon) == (conference, 0.0), 15, f"conference calls = {conference}, p2p_count = 0")


def test_a_mesh_of_demo_pages_follows_members_coming_and_going(demo_daemon, browser):  # noqa: F811
    pages: dict[str, Any] = {}
    closed = []
    try:
        pages["alice"] = browser.open("alice", demo_url(demo_daemon, room=ROOM, name="alice", auto="1"))
        pages["alice"].wait_for("document.body.dataset.state === 'joined' && document.body.dataset.members === '1'")
        gauges_become(demo_daemon, 0)
        for name, pairs in (("bob", 1), ("carol", 3)):
            pages[name] = browser.open(name, demo_url(demo_daemon, room=ROOM, name=name, auto="1"))
            for page in pages.values():
                in_mesh(page, len(pages) - 1)
            gauges_become(demo_daemon, pairs)
        # Each tile is a remote member's, one per member.
        labels = "[...document.querySelectorAll('.tile[data-uid] p')].map(p => p.textContent.split(':')[0])"
        assert sorted(pages["alice"].evaluate(labels)) == ["bob", "carol"]

        carol = pages.pop("carol")
        carol.close()
        closed.append(carol)
        for page in pages.values():
            in_mesh(page, 1, timeout=20)
            assert page.evaluate("document.querySelectorAll('.tile[data-uid]').length") == 1
        gauges_become(demo_daemon, 1)

        pages["dave"] = browser.open("dave", demo_url(demo_daemon, room=ROOM, name="dave", auto="1"))
        for page in pages.values():
            in_mesh(page, 2)
        gauges_become(demo_daemon, 3)
        assert "ICE with dave: connected" in pages["alice"].evaluate("document.getElementById('events').textContent")

        # A fourth member: a full mesh of four, six pairs.
        pages["erin"] = browser.open("erin", demo_url(demo_daemon, room=ROOM, name="erin", auto="1"))
        for page in pages.values():
            in_mesh(page, 3)
        gauges_become(demo_daemon, 6)

        for name in list(pages):
            page = pages.pop(name)
            page.close()
            closed.append(page)
        gauges_become(demo_daemon, 0)

        # Nothing came from another host, and nothing went wrong in any page.
        origin = urlsplit(demo_daemon.ws_url).netloc
        for page in closed:
            log = page.log()
            strangers = [u for u in log["requests"] if urlsplit(u).netloc != origin and not u.startswith("data:")]
            assert strangers == [], page.name
            assert log["errors"] == [], (page.name, log["errors"])
    finally:
        for page in pages.values():
            page.close()


def test_members_calling_each_other_at_once_make_one_call_per_pair(demo_daemon, browser):  # noqa: F811
    # No auto=1: three people press Call at the same instant (one clock), so in
    # every pair the proposals cross; per pair, one call goes on (the lower uid's).
    pages = []
    try:
        for count, name in enumerate(("alice", "bob", "carol"), start=1):
            pages.append(browser.open(name, demo_url(demo_daemon, room="#muc#glare", name=name)))
            pages[-1].wait_for(f"document.body.dataset.members === '{count}'")
        for page in pages:
            page.wait_for("document.body.dataset.members === '3' && !document.getElementById('call').disabled")
        at = pages[0].evaluate("Date.now() + 300")
        for page in pages:
            page.evaluate(f"(setTimeout(() => document.getElementById('call').click(), {at} - Date.now()), true)")
        # Whoever rings accepts (all its ringing calls with one click), until every pair is up.
        everyone_in = "document.body.dataset.peers === '2'"
        ringing = "!document.getElementById('incoming').hidden"

        def settled() -> bool:
            for page in pages:
                if page.evaluate(ringing):
                    page.evaluate("(document.getElementById('accept').click(), true)")
            return all(page.evaluate(everyone_in) for page in pages)

        poll(settled, 45, "every page in a call with the two others")
        for page in pages:
            assert page.evaluate("document.querySelectorAll('.tile[data-uid]').length") == 2
            page.wait_for(every_tile_decodes(2), timeout=30)
        gauges_become(demo_daemon, 3)
        assert all(page.log()["errors"] == [] for page in pages)
    finally:
        for page in pages:
            page.close()


def test_the_sizing_script_measures_a_mesh_of_two():
    # bench/mesh_size.py (the README's sizing figure), its shortest run: N = 2 only.
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    script = Path(__file__).resolve().parents[1] / "bench" / "mesh_size.py"
    run = subprocess.run(
        [sys.executable, str(script), "--min", "2", "--max", "2", "--settle", "1", "--window", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [(r["members"], r["ok"], r["streams"]) for r in rows] == [(2, True, 2)], run.stdout
    assert rows[0]["min_fps"] > 0 and rows[0]["browser_cores"] > 0
    assert run.stdout.splitlines()[-1] == "every stream decoded up to 2 members"
