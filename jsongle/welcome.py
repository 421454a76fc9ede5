"""The start-up note: what to open, where the log goes.

Logged once both ports are bound (wsPort may be 0). With the demo page on
(``make run``'s config) it is marked ``announce=True`` so the console shows
it whatever ``logDefaultLevel`` hides: a newcomer sees the demo URL and the
log file's place first. In production (``demo=false``) it is an info line
like any other: a console at ``warn`` stays quiet, the log file has it.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.logger import Logger

from jsongle import __version__
from jsongle.config import DEFAULT_CONFIG, Config

log = Logger()

#: Addresses that mean "every interface": the URL then names this machine.
_ANY = ("", "0.0.0.0", "::")


def urls(config: Config, ws_port: int, rest_port: "int | None") -> list[str]:
    """The lines of the note, for a server listening on these ports."""
    scheme = "https" if config.use_https else "http"
    host = "localhost" if config.listen_address in _ANY else config.listen_address
    if ":" in host:
        host = f"[{host}]"
    base = f"{scheme}://{host}:{ws_port}"
    token = "&token=<appToken>" if config.app_token else ""
    lines = [f"jsongle {__version__} is up: Socket.IO clients connect to {base} (path /socket.io/)"]
    if config.demo:
        lines.append(f"demo page: open {base}/demo/?room=demo&auto=1{token} in two browser tabs to make a call")
    else:
        lines.append("no demo page (demo=false); set demo=true to serve one at /demo/")
    if rest_port is not None:
        lines.append(f"REST and metrics: {scheme}://{host}:{rest_port}/health, /stats, /metrics")
    if config.log_path:
        default = " (the default logPath, in /tmp; set logPath to move it)" if config.log_path == DEFAULT_CONFIG.log_path else ""
        lines.append(
            f"log file: {config.log_path}{default}: every level, debug included;"
            f" the console shows {config.log_default_level} and above (logDefaultLevel)"
        )
    return lines


class Welcome(service.Service):
    """Logs :func:`urls` once the WebSocket and REST services are listening."""

    def __init__(self, config: Config, websocket: Any, rest: Any) -> None:
        self.config = config
        self.websocket = websocket
        self.rest = rest

    def startService(self) -> None:
        super().startService()
        # Siblings started before us: their ports are bound (or being bound).
        self.websocket._waitingForPort.addCallback(self._note)

    def _note(self, port: Any) -> Any:
        ws_port = port.getHost().port
        rest_port = self.rest.bound_port() if self.rest is not None else None
        for line in urls(self.config, ws_port, rest_port):
            log.info("{line}", line=line, announce=self.config.demo)
        return port
