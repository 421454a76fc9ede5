"""Who may connect: the application token, failed attempts per address, capacity."""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

from twisted.internet.interfaces import IReactorTime

from jsongle.config import Config
from jsongle.interfaces import ConnectRefused
from jsongle.metrics import Metrics
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.ratelimit import FailedAttempts

TOO_MANY_ATTEMPTS = "too many attempts"
MISSING_APP_TOKEN = "missing appToken"
INVALID_APP_TOKEN = "invalid appToken"
SERVER_FULL = "server full"


class Admission:
    """Checks a CONNECT; a refusal raises :class:`ConnectRefused` and is counted."""

    __slots__ = ("_config", "_clock", "_metrics", "_local", "failed_attempts")

    def __init__(self, config: Config, clock: IReactorTime, metrics: Metrics, local: LocalConnections) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._local = local
        self.failed_attempts = FailedAttempts(config.connect_failures_per_ip, config.connect_failure_window)

    def admit(self, remote: str, auth: dict[str, Any], returning: bool = False) -> None:
        """Let a client in, or raise ConnectRefused with the reason it sees.

        ``returning``: it takes back a session it lost (a resume); it is
        checked as a connect is, but it already holds its place (capacity).
        """
        expected = self._config.app_token
        if expected:
            now = self._clock.seconds()
            # Brute force: once an address used up its failures, its token is not even looked at.
            if self.failed_attempts.blocked(remote, now):
                self.refuse(TOO_MANY_ATTEMPTS)
            token = auth.get("appToken")
            if not isinstance(token, str) or not token:
                self.failed_attempts.failed(remote, now)
                self.refuse(MISSING_APP_TOKEN)
            if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
                self.failed_attempts.failed(remote, now)
                self.refuse(INVALID_APP_TOKEN)
        if not returning and len(self._local) >= self._config.max_concurrent_users:
            self.refuse(SERVER_FULL)

    def refuse(self, reason: str) -> NoReturn:
        self._metrics.connect_refused(reason)
        raise ConnectRefused(reason)
