"""Python side of ``tests/js/puppet.js``.

The puppet is a Node.js process that holds named ``socket.io-client`` sockets.
We send it one JSON command per line on stdin and it answers with one JSON
event per line on stdout (see the header of ``puppet.js`` for the protocol).

Lines are sorted into per-client buffers as they are read, so waiting for one
kind of line never loses another; lines without a client (``ready``,
``error``) are kept under the client ``None``.
"""

from __future__ import annotations

import itertools
import json
import queue
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

Line = dict[str, Any]
Where = Callable[[Line], bool]

_EOF = object()


class PuppetError(RuntimeError):
    """The puppet process could not be started or died."""


class Puppet:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._queue: queue.Queue[Any] = queue.Queue()
        self._buffers: dict[str | None, list[Line]] = defaultdict(list)
        self._seen: dict[str | None, list[Line]] = defaultdict(list)
        self._stderr: list[str] = []
        self._seq = itertools.count(1)
        self._eof = False
        self._stdin_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._err_reader.start()

    # ------------------------------------------------------------------ setup

    @classmethod
    def start(cls, js_dir: Path, timeout: float = 10.0) -> "Puppet":
        node = shutil.which("node")
        if node is None:
            raise PuppetError("node is not on PATH")
        proc = subprocess.Popen(
            [node, "puppet.js"],
            cwd=str(js_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        puppet = cls(proc)
        try:
            puppet.next(None, "ready", timeout=timeout)
        except AssertionError as exc:
            puppet.stop()
            raise PuppetError(f"puppet did not start: {exc}") from None
        return puppet

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            try:
                line = json.loads(raw)
                if not isinstance(line, dict):
                    raise ValueError("not an object")
            except ValueError:
                line = {"type": "stdout", "text": raw}
            self._queue.put(line)
        self._queue.put(_EOF)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._stderr.append(raw.rstrip("\n"))

    def stderr(self) -> str:
        """Everything the Node process wrote on stderr so far."""
        return "\n".join(self._stderr)

    # --------------------------------------------------------------- commands

    def _send(self, command: Line) -> None:
        if self._proc.poll() is not None:
            raise PuppetError(
                f"puppet exited with {self._proc.returncode}; stderr:\n{self.stderr()}"
            )
        data = json.dumps(command) + "\n"
        assert self._proc.stdin is not None
        with self._stdin_lock:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def connect(self, client: str, url: str, **options: Any) -> None:
        """Open a socket named *client*; *options* go to ``io(url, options)``.

        Example: ``connect("a", url, auth={"appToken": "x"},
        transports=["websocket"], reconnection=False)``.
        """
        self._send({"op": "connect", "client": client, "url": url, "options": options})

    def emit(self, client: str, event: str, *args: Any, ack: bool = False) -> int | None:
        """Emit *event* with *args*; with ``ack=True`` return the seq that the
        matching ``ack`` line will carry (see :meth:`next_ack`)."""
        command: Line = {"op": "emit", "client": client, "event": event, "args": list(args)}
        seq = None
        if ack:
            seq = next(self._seq)
            command["ack"] = True
            command["seq"] = seq
        self._send(command)
        return seq

    def close(self, client: str) -> None:
        """Client-side ``socket.disconnect()``."""
        self._send({"op": "close", "client": client})

    def stop_pong(self, client: str) -> None:
        """Stop answering Engine.IO pings (also on later reconnections)."""
        self._send({"op": "stop_pong", "client": client})

    def raw(self, client: str, packet: str) -> None:
        """Send *packet* as the payload of an Engine.IO message packet."""
        self._send({"op": "raw", "client": client, "packet": packet})

    def state(self, client: str, timeout: float = 10.0) -> Line:
        """The socket's state now: id, connected, active, recovered, pid, offset."""
        self._send({"op": "state", "client": client})
        return self.next(client, "state", timeout=timeout)

    def drop(self, client: str) -> None:
        """Destroy the client's WebSocket TCP socket: the network went away."""
        self._send({"op": "drop", "client": client})

    def send_line(self, text: str) -> None:
        """Send an arbitrary line (for testing the puppet's error handling)."""
        assert self._proc.stdin is not None
        with self._stdin_lock:
            self._proc.stdin.write(text.rstrip("\n") + "\n")
            self._proc.stdin.flush()

    # ----------------------------------------------------------------- events

    def _pump(self, timeout: float) -> bool:
        """Move at most one line from the reader into the buffers.

        Returns False when nothing arrived within *timeout*."""
        if self._eof:
            return False
        try:
            item = self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        if item is _EOF:
            self._eof = True
            return False
        client = item.get("client")
        self._buffers[client].append(item)
        self._seen[client].append(item)
        return True

    @staticmethod
    def _matches(line: Line, type: str | None, where: Where | None) -> bool:
        if type is not None and line.get("type") != type:
            return False
        return where is None or bool(where(line))

    def _take(self, client: str | None, type: str | None, where: Where | None) -> Line | None:
        buffer = self._buffers[client]
        for index, line in enumerate(buffer):
            if self._matches(line, type, where):
                return buffer.pop(index)
        return None

    def next(
        self,
        client: str | None,
        type: str | None = None,
        timeout: float = 10.0,
        where: Where | None = None,
    ) -> Line:
        """Return the oldest unconsumed line of *client* matching *type* and
        *where*; other lines stay buffered for later calls.

        Raises AssertionError (listing the client's lines) on timeout or when
        the puppet has exited. Use ``client=None`` for lines without a client
        (``error``, ``ready``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._take(client, type, where)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                break
            # Pump everything that arrives until a match shows up.
            self._pump(remaining)
        why = "puppet exited" if self._eof else f"timed out after {timeout}s"
        raise AssertionError(
            f"{why} waiting for client={client!r} type={type!r}"
            f"{' (with a where filter)' if where else ''}; "
            f"lines seen for that client:\n{self._describe(client)}"
        )

    def next_jsongle(self, client: str, timeout: float = 10.0, where: Where | None = None) -> Any:
        """Next ``jsongle`` event of *client*; returns its payload (args[0]).

        *where*, if given, is called with that payload."""

        def is_jsongle(line: Line) -> bool:
            if line.get("event") != "jsongle" or not line.get("args"):
                return False
            return where is None or bool(where(line["args"][0]))

        return self.next(client, "event", timeout=timeout, where=is_jsongle)["args"][0]

    def next_ack(self, client: str, seq: int, timeout: float = 10.0) -> list[Any]:
        """Arguments of the ack answering the emit that returned *seq*."""
        return self.next(client, "ack", timeout=timeout, where=lambda l: l.get("seq") == seq)["args"]

    def assert_quiet(
        self,
        client: str | None,
        type: str | None = None,
        within: float = 0.3,
        where: Where | None = None,
    ) -> None:
        """Assert that no (matching) line of *client* arrives within *within*
        seconds, and that none is waiting unconsumed in the buffer.

        This is the one place where the tests wait a fixed time: it is only
        used to prove an absence (e.g. "the server sent nothing back")."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._pump(remaining)
        unexpected = [l for l in self._buffers[client] if self._matches(l, type, where)]
        if unexpected:
            raise AssertionError(
                f"expected no {type or 'line'} for client={client!r}, got:\n"
                + "\n".join(json.dumps(l) for l in unexpected)
            )

    def pending(self, client: str | None) -> list[Line]:
        """Unconsumed lines of *client* received so far (does not wait)."""
        while self._pump(0):
            pass
        return list(self._buffers[client])

    def _describe(self, client: str | None) -> str:
        lines = [json.dumps(l) for l in self._seen[client]] or ["(none)"]
        text = "\n".join(lines)
        if self._stderr:
            text += "\npuppet stderr:\n" + self.stderr()
        return text

    # --------------------------------------------------------------- shutdown

    def stop(self, timeout: float = 5.0) -> int:
        """Ask the puppet to disconnect everything and exit; kill it (by its
        own PID) if it does not. Returns the exit code. Idempotent."""
        if self._proc.poll() is None:
            try:
                self._send({"op": "exit"})
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            except (OSError, ValueError, PuppetError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        # The readers end at EOF, once the process is gone.
        self._reader.join(timeout=2)
        self._err_reader.join(timeout=2)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except (OSError, ValueError):
                pass
        return self._proc.returncode
