"""A TCP proxy a test controls: cut one process's link to a server, then mend it.

The proxy listens on 127.0.0.1 and copies bytes both ways between each
accepted connection and the target.  :meth:`TcpProxy.cut` closes every
connection and the listening socket (new connections are refused, as when a
network path is gone); :meth:`TcpProxy.mend` listens again on the same port.
One thread runs everything with ``selectors``; it is stopped by
:meth:`TcpProxy.stop`.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Optional

from tests.support.redis import free_port


class TcpProxy:
    """127.0.0.1:``port`` -> 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int, port: Optional[int] = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._peers: dict[socket.socket, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._requests: list[str] = []
        self._done: list[threading.Event] = []
        self._running = False
        self._thread = threading.Thread(target=self._run, name="tcpproxy", daemon=True)

    def start(self) -> "TcpProxy":
        self._running = True
        self._listen()
        self._thread.start()
        return self

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._peers) // 2

    def cut(self) -> None:
        """Close every proxied connection and stop listening."""
        self._ask("cut")

    def mend(self) -> None:
        """Listen again on the same port."""
        self._ask("mend")

    def stop(self) -> None:
        if not self._running:
            return
        self._ask("stop")
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    # -- the proxy thread --------------------------------------------------

    def _ask(self, request: str) -> None:
        """Run ``request`` on the proxy thread and wait until it is done."""
        done = threading.Event()
        with self._lock:
            self._requests.append(request)
            self._done.append(done)
        self._wake_w.send(b"x")
        if not done.wait(timeout=5):
            raise RuntimeError(f"tcp proxy did not {request} within 5s")

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")

    def _close_all(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        with self._lock:
            peers, self._peers = self._peers, {}
        for sock in peers:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "data")
        with self._lock:
            self._peers[client] = upstream
            self._peers[upstream] = client

    def _forward(self, sock: socket.socket) -> None:
        with self._lock:
            other = self._peers.get(sock)
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data and other is not None:
            try:
                other.setblocking(True)
                other.sendall(data)
                other.setblocking(False)
                return
            except OSError:
                pass
        with self._lock:
            self._peers.pop(sock, None)
            if other is not None:
                self._peers.pop(other, None)
        self._drop(sock)
        if other is not None:
            self._drop(other)

    def _run(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=1):
                if key.data == "wake":
                    self._wake_r.recv(64)
                    with self._lock:
                        requests, self._requests = self._requests, []
                        done, self._done = self._done, []
                    for request, event in zip(requests, done):
                        if request in ("cut", "stop"):
                            self._close_all()
                        elif request == "mend" and self._listener is None:
                            self._listen()
                        if request == "stop":
                            self._running = False
                        event.set()
                    break  # the registered sockets may have changed
                if key.data == "accept":
                    self._accept()
                else:
                    self._forward(key.fileobj)  # type: ignore[arg-type]
