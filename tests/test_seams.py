"""The seams hold: layering, no import cycle, constructor wiring, and the
real objects provide the interfaces plugins and applications rely on."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from jsongle.config import Config
from jsongle.interfaces import IConnection, IHandlerRequest, IMember, ISocketApplication
from jsongle.signaling.builtin import builtin_actions, builtin_queries
from jsongle.signaling.handlers import HandlerSet
from tests.support.fakes import FakeConnection, Parts

PACKAGE = Path(__file__).resolve().parents[1] / "jsongle"


def imports_of(path: Path) -> set[str]:
    """The jsongle modules a file imports (at any depth of the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("jsongle"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jsongle"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_jsongle_application_knows_nothing_of_socketio_or_engineio():
    for path in sorted((PACKAGE / "signaling").glob("*.py")):
        bad = {name for name in imports_of(path) if name.startswith(("jsongle.socketio", "jsongle.engineio"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_no_import_cycle_in_the_package():
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {dep for dep in imports_of(path) if dep in modules and dep != name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(name):] + [name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, stack + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_service_wires_by_constructor():
    """tap.py sets no attribute of another object after building it."""
    tree = ast.parse((PACKAGE / "tap.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        targets: list[Any] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for element in ast.walk(target):
                if isinstance(element, ast.Attribute):
                    owner = element.value
                    assert isinstance(owner, ast.Name) and owner.id == "self", (
                        f"tap.py line {element.lineno}: assigns {ast.unparse(element)}"
                    )


def test_the_real_request_member_and_connections_provide_their_interfaces():
    """What plugins may use (IHandlerRequest, IMember) is what the server hands them."""
    seen: list[Any] = []

    class Probe:
        action = "probe"
        call = False

        def handle(self, request: Any) -> None:
            seen.append(request)

    from zope.interface import implementer

    from jsongle.interfaces import IActionHandler

    handlers = HandlerSet(builtin_queries(), builtin_actions() + [implementer(IActionHandler)(Probe)()])
    parts = Parts(Config(), Clock(), handlers)
    connection = FakeConnection("sid-a")
    verifyObject(IConnection, connection)
    verifyObject(ISocketApplication, parts.app)
    parts.app.connect(connection, {})
    hello = connection.take_one()["jsongle"]
    parts.app.event(connection, "jsongle", [{"to": "jsongle-server", "jsongle": {
        "action": "iq-result", "query": "session-hello", "transaction": hello["transaction"], "description": {"uid": "a"}}}], None)
    parts.app.event(connection, "jsongle", [{"to": "jsongle-server", "jsongle": {"action": "probe"}}], None)
    (request,) = seen
    verifyObject(IHandlerRequest, request)
    verifyObject(IMember, request.member)


def test_the_socketio_connection_provides_iconnection():
    from jsongle.randompool import RandomPool, SessionIds
    from jsongle.socketio.server import Connection, SocketIOServer

    class Session:
        sid = "eio"
        remote = "127.0.0.1"
        closed = False
        listener: Any = None

        class transport:
            name = "websocket"

    class App:
        event_name = "jsongle"

    server = SocketIOServer({"/": App()}, Clock(), 45.0, SessionIds(RandomPool()), lambda reason, namespace: None)
    session = Session()
    server.on_engine_open(session)  # type: ignore[arg-type]
    verifyObject(IConnection, Connection("sid", "/", session.listener, App()))  # type: ignore[arg-type]
