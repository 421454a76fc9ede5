"""The demo page in headless Chromium with fake camera and microphone (PROTOCOL.md §14).

Two pages in a P2P room call each other by themselves (``auto=1``), get each
other's video, and one closing ends the call on the other. Everything is read
from the page: ``document.body.dataset`` and the video elements.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode, urlsplit

import pytest

TOKEN = "test-token"

REMOTE_VIDEO_PLAYS = (
    "[...document.querySelectorAll('video.remote')].some("
    "v => !v.paused && v.getVideoPlaybackQuality().totalVideoFrames > 0)"
)


@pytest.fixture
def demo_daemon(daemon_factory):
    return daemon_factory({"demo": True, "appToken": TOKEN})


def demo_url(daemon, **query: str) -> str:
    return f"{daemon.ws_url}/demo/?{urlencode({'token': TOKEN, **query})}"


def test_two_pages_call_and_hang_up(demo_daemon, browser, tmp_path):
    alice = browser.open("alice", demo_url(demo_daemon, room="r1", name="Alice", auto="1"))
    bob = None
    try:
        alice.wait_for("document.body.dataset.state === 'joined'")
        assert alice.dataset() == {"state": "joined", "members": "1", "peers": "0"}

        bob = browser.open("bob", demo_url(demo_daemon, room="r1", name="Bob", auto="1"))
        for page in (alice, bob):
            page.wait_for("document.body.dataset.state === 'in-call' && document.body.dataset.peers === '1'", timeout=30)
            assert page.dataset() == {"state": "in-call", "members": "2", "peers": "1"}
            # Remote video is decoded and playing, not just negotiated.
            page.wait_for(REMOTE_VIDEO_PLAYS, timeout=20)
            assert page.evaluate("document.querySelectorAll('video.local').length") == 1
        # The states in words, for a person.
        assert "ICE with Bob: connected" in alice.evaluate("document.getElementById('events').textContent")
        assert "Bob — in call" in alice.evaluate("document.getElementById('members').textContent")
        for page in (alice, bob):
            shot = page.screenshot(tmp_path / f"two-page-call-{page.name}.png")
            print(f"screenshot of the call ({page.name}'s page): {shot}")
            assert shot.stat().st_size > 0

        bob.close()
        alice.wait_for(
            "document.body.dataset.state === 'joined' && document.body.dataset.peers === '0'"
            " && document.body.dataset.members === '1'",
            timeout=15,
        )
        assert alice.evaluate("document.querySelectorAll('video.remote').length") == 0

        # Nothing came from another host, and nothing went wrong in either page.
        origin = urlsplit(demo_daemon.ws_url).netloc
        for page in (alice, bob):
            log = page.log()
            assert any(url.startswith("ws://") for url in log["requests"]), log["requests"]
            strangers = [url for url in log["requests"] if urlsplit(url).netloc != origin and not url.startswith("data:")]
            assert strangers == [], page.name
            assert log["errors"] == [], page.name
    finally:
        for page in (alice, bob):
            if page is not None:
                page.close()


def say(page, text: str) -> None:
    page.evaluate(
        f"(document.getElementById('text').value = {text!r},"
        " document.getElementById('say').requestSubmit(), true)"
    )


CHAT_LINES = "[...document.querySelectorAll('#messages li')].map(li => li.textContent)"


@pytest.mark.parametrize("room", ["r-chat", "#muc#chat"])
def test_room_chat_shows_the_server_ack(demo_daemon, browser, room):
    # A P2P room and a MUC room (joined with muc-join by its prefix): chat only, no call.
    opened = []
    try:
        alice = browser.open("alice", demo_url(demo_daemon, room=room, name="Alice"))
        opened.append(alice)
        bob = browser.open("bob", demo_url(demo_daemon, room=room, name="Bob"))
        opened.append(bob)
        for page in (alice, bob):
            page.wait_for("document.body.dataset.members === '2'")
            assert page.dataset()["state"] == "joined"
        say(alice, "hello Bob")
        bob.wait_for(f"{CHAT_LINES}.includes('Alice: hello Bob')")
        alice.wait_for(f"{CHAT_LINES}.includes('Alice: hello Bob ✓ received by the server')")
        assert alice.dataset()["peers"] == "0"
        assert alice.log()["errors"] == [] and bob.log()["errors"] == []
    finally:
        for page in opened:
            page.close()


def test_a_refused_connection_is_an_error_in_words(demo_daemon, browser):
    page = browser.open("intruder", demo_url(demo_daemon, room="r1", token="wrong"))
    try:
        page.wait_for("document.body.dataset.state === 'error'")
        assert "invalid appToken" in page.evaluate("document.getElementById('error').textContent")
    finally:
        page.close()


def test_a_full_room_is_an_error_in_words(demo_daemon, browser):
    pages = []
    try:
        # One after the other, so the third is the one refused (maxMembersPerRoom=2).
        for name, members in (("one", "1"), ("two", "2")):
            pages.append(browser.open(name, demo_url(demo_daemon, room="r-full", name=name)))
            pages[-1].wait_for(f"document.body.dataset.members === '{members}'")
        pages.append(browser.open("three", demo_url(demo_daemon, room="r-full", name="three")))
        pages[2].wait_for("document.body.dataset.state === 'error'")
        assert "(403001)" in pages[2].evaluate("document.getElementById('error').textContent")
    finally:
        for page in pages:
            page.close()


def click(page, element_id: str) -> None:
    page.evaluate(f"(document.getElementById({element_id!r}).click(), true)")


LOCAL_TRACK_ENABLED = "document.querySelector('video.local').srcObject.get{kind}Tracks()[0].enabled"


def test_a_person_calls_accepts_mutes_and_hangs_up(demo_daemon, browser):
    # No auto=1: the buttons do it, as a person would.
    opened = []
    try:
        alice = browser.open("alice", demo_url(demo_daemon, room="r-buttons", name="Alice"))
        opened.append(alice)
        bob = browser.open("bob", demo_url(demo_daemon, room="r-buttons", name="Bob"))
        opened.append(bob)
        bob.wait_for("document.body.dataset.members === '2' && !document.getElementById('call').disabled")
        click(bob, "call")
        alice.wait_for("!document.getElementById('incoming').hidden")
        assert alice.evaluate("document.getElementById('incoming-text').textContent") == "Bob is calling"
        click(alice, "accept")
        for page in (alice, bob):
            page.wait_for("document.body.dataset.state === 'in-call' && document.body.dataset.peers === '1'", timeout=30)

        click(alice, "mute")
        assert alice.evaluate(LOCAL_TRACK_ENABLED.format(kind="Audio")) is False
        assert alice.evaluate("document.getElementById('mute').textContent") == "Unmute"
        click(alice, "camera")
        assert alice.evaluate(LOCAL_TRACK_ENABLED.format(kind="Video")) is False
        assert alice.evaluate("document.getElementById('camera').textContent") == "Camera on"
        click(alice, "mute")
        assert alice.evaluate(LOCAL_TRACK_ENABLED.format(kind="Audio")) is True

        click(bob, "hangup")
        for page in (alice, bob):
            page.wait_for("document.body.dataset.state === 'joined' && document.body.dataset.peers === '0'")
            assert page.dataset()["members"] == "2"  # both still in the room
        assert "ended: they hung up" in alice.evaluate("document.getElementById('events').textContent")
        assert alice.log()["errors"] == [] and bob.log()["errors"] == []
    finally:
        for page in opened:
            page.close()


def test_join_a_room_by_name_with_the_form(demo_daemon, browser):
    page = browser.open("form", f"{demo_daemon.ws_url}/demo/")
    try:
        # No room yet: the form, and no connection (nor a refused one: the token comes with the room).
        assert page.dataset()["state"] == "connecting"
        assert page.evaluate("document.getElementById('connection').textContent") == "not connected: choose a room above"
        page.evaluate(
            "(document.getElementById('room').value = 'by-name', document.getElementById('name').value = 'Carol',"
            f" document.getElementById('token').value = {TOKEN!r}, document.getElementById('join').requestSubmit(), true)"
        )
        page.wait_for("location.search.includes('room=by-name') && document.body.dataset.state === 'joined'")
        assert page.evaluate("document.getElementById('members').textContent") == "Carol (you)"
        assert page.log()["errors"] == []
    finally:
        page.close()


def test_both_calling_at_once_ends_in_one_call(demo_daemon, browser):
    opened = []
    try:
        for name in ("alice", "bob"):
            opened.append(browser.open(name, demo_url(demo_daemon, room="r-glare", name=name, auto="0")))
        for page in opened:
            page.wait_for("document.body.dataset.members === '2' && !document.getElementById('call').disabled")
        # Both click Call at the same instant (one clock), so the proposals cross
        # on the wire; whichever way they cross, one call rings on one side.
        at = opened[0].evaluate("Date.now() + 300")
        for page in opened:
            page.evaluate(f"(setTimeout(() => document.getElementById('call').click(), {at} - Date.now()), true)")
        ringing = "!document.getElementById('incoming').hidden"
        deadline = time.monotonic() + 15
        while not (callee := next((p for p in opened if p.evaluate(ringing)), None)):
            assert time.monotonic() < deadline, [p.describe() for p in opened]
            time.sleep(0.05)
        assert [p.evaluate(ringing) for p in opened].count(True) == 1
        click(callee, "accept")
        for page in opened:
            page.wait_for("document.body.dataset.state === 'in-call' && document.body.dataset.peers === '1'", timeout=30)
            assert page.evaluate("document.querySelectorAll('video.remote').length") == 1
    finally:
        for page in opened:
            page.close()


def test_a_lost_server_shows_and_a_new_one_is_joined_again(daemon_factory, browser, tmp_path):
    # The page reconnects by itself (socket.io-client) and joins its room again.
    first = daemon_factory({"demo": True, "appToken": TOKEN})
    port = first.ws_port
    page = browser.open("lonely", demo_url(first, room="r-again", name="Dana"))
    try:
        page.wait_for("document.body.dataset.state === 'joined'")
        first.stop()
        page.wait_for("document.body.dataset.state === 'connecting'")
        assert "disconnected" in page.evaluate("document.getElementById('connection').textContent")
        daemon_factory({"demo": True, "appToken": TOKEN, "wsPort": port})
        page.wait_for("document.body.dataset.state === 'joined' && document.body.dataset.members === '1'", timeout=30)
    finally:
        page.close()
