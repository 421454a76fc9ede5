"""A call in the demo page survives a network switch (PROTOCOL.md §10, §14).

Two pages of the demo (which connects with ``resume: true``) call each other;
one of them reaches the server through a proxy that plays its network. The
network is cut and kept down while the other page chats, then comes back:
the page resumes its session (same socket, no new hello, no rejoin), gets
the chat line it missed, and the call stays up on both sides; the other page
never sees it leave.
"""

from __future__ import annotations

from tests.support.switchproxy import SwitchProxy
from tests.test_demo_browser import CHAT_LINES, TOKEN, demo_url, say

EVENTS = "[...document.querySelectorAll('#events li')].map(li => li.textContent)"
IN_CALL = "document.body.dataset.state === 'in-call' && document.body.dataset.peers === '1'"


def test_a_demo_call_survives_a_network_cut(daemon_factory, browser):
    daemon = daemon_factory({"demo": True, "appToken": TOKEN, "resumeWindow": "30s", "pingInterval": 1000, "pingTimeout": 1000})
    network = SwitchProxy(daemon.ws_port)
    opened = []
    try:
        alice = browser.open("alice", demo_url(daemon, room="r1", name="Alice", auto="1"))
        opened.append(alice)
        alice.wait_for("document.body.dataset.state === 'joined'")
        bob_url = demo_url(daemon, room="r1", name="Bob", auto="1").replace(daemon.ws_url, network.url)
        bob = browser.open("bob", bob_url)
        opened.append(bob)
        for page in (alice, bob):
            page.wait_for(IN_CALL, timeout=30)

        assert network.cut(down=True) >= 1
        daemon.wait_for_line(r"away \(transport close\)")
        say(alice, "while you were away")
        alice.wait_for(f"{CHAT_LINES}.includes('Alice: while you were away ✓ received by the server')")
        network.up()

        daemon.wait_for_line(r"resumed from .*: [1-9]\d* missed packet", timeout=20)
        bob.wait_for(f"{CHAT_LINES}.includes('Alice: while you were away')")
        for page in (alice, bob):
            page.wait_for(IN_CALL, timeout=10)
            assert page.dataset()["members"] == "2"
        # One hello only (no fresh session), and Alice never saw Bob leave.
        assert bob.evaluate(f"{EVENTS}.filter(line => line.includes('hello from')).length") == 1
        assert not alice.evaluate(f"{EVENTS}.some(line => line.includes('left'))")
        say(bob, "back")
        alice.wait_for(f"{CHAT_LINES}.includes('Bob: back')")
    finally:
        for page in opened:
            page.close()
        network.close()
