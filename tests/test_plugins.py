"""JSONgle handlers as Twisted plugins.

Discovery finds every built-in handler and each provider verifies against its
interface; two plugins claiming one name stop the start, naming both; and the
example third-party package of docs/plugins.md installs with pip and serves
its query to a real socket.io-client.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.protocol import CALL_ACTIONS as PROTOCOL_CALL_ACTIONS
from twisted.plugin import getPlugins
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twisted.plugins
from jsongle.interfaces import IActionHandler, IQueryHandler
from jsongle.signaling import builtin
from jsongle.signaling.handlers import HandlerConflict, HandlerSet, discover
from tests.support.daemon import REPO_ROOT, run_expecting_failure

TOKEN = "test-token"  # the harness's default appToken
SERVER_ID = "jsongle-server"
EXAMPLE = REPO_ROOT / "examples" / "room_members_plugin"

DUPE_DROPIN = '''\
from twisted.plugin import IPlugin
from zope.interface import implementer

from jsongle.interfaces import IQueryHandler


@implementer(IPlugin, IQueryHandler)
class SecondJoinHandler:
    query = "session-join"
    action = "iq-set"

    def handle(self, request):
        return {"members": [], "rid": "elsewhere"}


second_join = SecondJoinHandler()
'''


# -- discovery -------------------------------------------------------------


CALL_ACTIONS = set(PROTOCOL_CALL_ACTIONS)
OTHER_ACTIONS = {"session-event", "session-text", "session-custom", "session-metrics"}
QUERIES = {("iq-result", "session-hello"), ("iq-set", "session-join"), ("iq-set", "muc-join"), ("iq-set", "session-leave")}


def test_discovery_finds_every_builtin():
    handlers = discover()
    for action, query in QUERIES:
        found = handlers.query(action, query)
        assert found is not None and type(found).__module__ == "jsongle.signaling.builtin", query
    for action in CALL_ACTIONS | OTHER_ACTIONS:
        found = handlers.action(action)
        assert found is not None and type(found).__module__ == "jsongle.signaling.builtin", action
        assert found.call == (action in CALL_ACTIONS), action
    # The dropin registers exactly what builtin_queries()/builtin_actions() list.
    assert {(h.action, h.query) for h in builtin.builtin_queries()} == QUERIES
    assert {h.action for h in builtin.builtin_actions()} == CALL_ACTIONS | OTHER_ACTIONS


def test_every_provider_verifies():
    queries = list(getPlugins(IQueryHandler, twisted.plugins))
    actions = list(getPlugins(IActionHandler, twisted.plugins))
    assert queries and actions
    for handler in queries:
        assert verifyObject(IQueryHandler, handler)
    for handler in actions:
        assert verifyObject(IActionHandler, handler)


def test_handler_set_refuses_two_claims():
    @implementer(IQueryHandler)
    class OtherJoin:
        query = "session-join"
        action = "iq-set"

        def handle(self, request: Any) -> None:
            pass

    with pytest.raises(HandlerConflict) as raised:
        HandlerSet([builtin.JoinHandler(), OtherJoin()], [])
    message = str(raised.value)
    assert "jsongle.signaling.builtin.JoinHandler" in message and "OtherJoin" in message
    with pytest.raises(HandlerConflict, match="session-text"):
        HandlerSet([], [builtin.AcknowledgedRelayHandler("session-text"), builtin.AcknowledgedRelayHandler("session-text")])


def test_duplicate_plugin_stops_the_start(tmp_path):
    plugins = tmp_path / "extra" / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "jsongle_dupe.py").write_text(DUPE_DROPIN, encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path / "extra")])}
    code, output = run_expecting_failure(tmp_path / "daemon", None, env=env)
    assert code != 0
    assert "query 'session-join' is claimed by two handlers" in output
    assert "jsongle.signaling.builtin.JoinHandler" in output
    assert "jsongle_dupe.SecondJoinHandler" in output
    assert "listening on" not in output


# -- the example package of docs/plugins.md ---------------------------------


def pip_install(source: Path, target: Path) -> None:
    """``pip install --no-deps --target``, as a user installs the plugin.

    When this virtualenv can build wheels by itself, build without isolation
    (no index needed); otherwise pip fetches the build backend as usual.
    """
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--quiet", "--target", str(target)]
    if importlib.util.find_spec("wheel") is not None or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None:
        command.append("--no-build-isolation")
    result = subprocess.run(command + [str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def example_site(tmp_path) -> Path:
    """The example package pip-installed into a directory of its own."""
    # A copy, so pip's in-tree build leaves the repository clean.
    source = tmp_path / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "dropin.cache"))
    site = tmp_path / "site"
    pip_install(source, site)
    assert (site / "room_members" / "__init__.py").is_file()
    assert (site / "twisted" / "plugins" / "jsongle_room_members.py").is_file()
    # No __init__.py that would shadow Twisted's own packages.
    assert not (site / "twisted" / "__init__.py").exists()
    assert not (site / "twisted" / "plugins" / "__init__.py").exists()
    return site


def test_example_plugin_cache_is_regenerated(example_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(example_site)]))
    regenerate = "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
    subprocess.run([sys.executable, "-c", regenerate], env=env, check=True, timeout=60)
    assert (example_site / "twisted" / "plugins" / "dropin.cache").is_file()
    show = (
        "import twisted.plugins; from twisted.plugin import getPlugins;"
        "from jsongle.interfaces import IQueryHandler;"
        "print(sorted(type(p).__module__ for p in getPlugins(IQueryHandler, twisted.plugins)))"
    )
    found = subprocess.run([sys.executable, "-c", show], env=env, check=True, timeout=60, capture_output=True, text=True)
    assert "room_members" in found.stdout


class Client:
    """A socket.io-client socket of the puppet, after its session-hello."""

    def __init__(self, puppet: Any, daemon: Any, name: str) -> None:
        self.puppet = puppet
        self.name = name
        puppet.connect(name, daemon.ws_url, auth={"appToken": TOKEN}, reconnection=False)
        self.sid = puppet.next(name, "connect")["id"]
        hello = self.receive()["jsongle"]
        self.identity = {"uid": name, "dn": name.title()}
        self.send({"action": "iq-result", "query": "session-hello", "transaction": hello["transaction"], "description": self.identity})
        assert self.receive()["jsongle"]["status"] == "success"

    def send(self, jsongle: dict[str, Any]) -> dict[str, Any]:
        message = {"id": str(uuid.uuid4()), "from": self.sid, "to": SERVER_ID, "jsongle": jsongle}
        self.puppet.emit(self.name, "jsongle", message)
        return message

    def receive(self) -> dict[str, Any]:
        return self.puppet.next_jsongle(self.name)

    def query(self, query: str, description: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send an iq-set; return the request and the next message (its answer)."""
        request = self.send({"action": "iq-set", "query": query, "transaction": str(uuid.uuid4()), "description": description})
        return request, self.receive()


class AnyUuid:
    """Equal to any uuid string (the ids the server makes)."""

    def __eq__(self, other: object) -> bool:
        try:
            return isinstance(other, str) and str(uuid.UUID(other)) == other
        except ValueError:
            return False

    def __repr__(self) -> str:
        return "<uuid>"


ANY_UUID = AnyUuid()


def iq_answer(client: Client, request: dict[str, Any], action: str, description: Any) -> dict[str, Any]:
    jsongle = request["jsongle"]
    return {
        "id": ANY_UUID,
        "from": SERVER_ID,
        "to": client.sid,
        "jsongle": {"action": action, "query": jsongle["query"], "transaction": jsongle["transaction"], "description": description},
    }


def test_example_plugin_serves_room_members(example_site, daemon_factory, puppet):
    daemon = daemon_factory(env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(example_site)])})
    alice, bob, carol = (Client(puppet, daemon, name) for name in ("alice", "bob", "carol"))
    for client in (alice, bob):
        request, answer = client.query("session-join", {"rid": "r1"})
        assert answer["jsongle"]["action"] == "iq-result"
    alice.receive()  # bob joined

    request, answer = alice.query("room-members", {"rid": "r1"})
    assert answer == iq_answer(alice, request, "iq-result", {"rid": "r1", "members": [alice.identity, bob.identity]})
    request, answer = carol.query("room-members", {"rid": "r1"})
    assert answer == iq_answer(carol, request, "iq-error", {"errorCode": 404002, "errorDetails": "Not member of room r1"})
    request, answer = carol.query("room-members", {"rid": "nowhere"})
    assert answer == iq_answer(carol, request, "iq-error", {"errorCode": 404002, "errorDetails": "Not member of room nowhere"})
    request, answer = carol.query("room-members", {})
    assert answer == iq_answer(carol, request, "iq-error", {"errorCode": 400001, "errorDetails": "Missing 'rid' parameter"})
    # The built-in queries are still there.
    request, answer = bob.query("session-leave", {"rid": "r1"})
    assert answer == iq_answer(bob, request, "iq-result", {"rid": "r1"})
