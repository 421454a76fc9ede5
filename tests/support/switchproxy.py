"""A small TCP proxy on 127.0.0.1 that plays "the network" between clients and a server.

Clients connect to :attr:`SwitchProxy.port`; each connection is piped to the
current target port. A test can cut every live connection (a Wi-Fi switch:
both ends see their TCP connection end), keep the network down for a while
(new connections are closed at once), and send the next connections to
another process (a restart behind one address).
"""

from __future__ import annotations

import socket
import threading
from typing import Optional


class SwitchProxy:
    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        #: Server-side sockets left open, silent, by a cut of the client side only.
        self._held: list[socket.socket] = []
        self._down = False
        self._closed = False
        #: How many connections were piped through, to each target port.
        self.connections: dict[int, int] = {}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def retarget(self, port: int) -> None:
        """Send the next connections to ``port`` (live ones stay where they are)."""
        with self._lock:
            self._target = port

    def cut(self, down: bool = False, client_side_only: bool = False) -> int:
        """End every live connection at both ends; with ``down``, keep the
        network down (new connections are closed at once) until :meth:`up`.
        With ``client_side_only`` the server's ends stay open and silent (it
        learns of the loss by its ping timeout only). Returns how many
        connections were cut."""
        with self._lock:
            self._down = self._down or down
            pairs, self._pairs = self._pairs, set()
            if client_side_only:
                self._held.extend(upstream for _, upstream in pairs)
        for client, upstream in pairs:
            _close(client)
            if not client_side_only:
                _close(upstream)
        return len(pairs)

    def down(self) -> None:
        """New connections are closed at once; live ones go on (a server that
        closes them itself, at a restart, is still heard by its clients)."""
        with self._lock:
            self._down = True

    def up(self) -> None:
        """The network is back: new connections go through again."""
        with self._lock:
            self._down = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        _close(self._listener)
        self.cut()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            _close(sock)
        self._acceptor.join(timeout=5)

    # -- internals -----------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                closed, down, target = self._closed, self._down, self._target
            if closed or down:
                _close(client)
                if closed:
                    return
                continue
            upstream = self._connect(target)
            if upstream is None:
                _close(client)
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.connections[target] = self.connections.get(target, 0) + 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    @staticmethod
    def _connect(port: int) -> Optional[socket.socket]:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            return None

    def _pump(self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            source.settimeout(None)  # raises if a cut closed it already
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
            held = pair[1] in self._held
        _close(pair[0])
        if not held:
            _close(pair[1])


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
