"""Who may connect: the application token, the per-user token, failed attempts per address, capacity."""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, Optional

from twisted.internet.interfaces import IReactorTime

from jsongle.config import Config
from jsongle.interfaces import ConnectRefused
from jsongle.metrics import Metrics
from jsongle.signaling.connections import LocalConnections
from jsongle.signaling.ratelimit import FailedAttempts
from jsongle.signaling.tokens import Claims, TokenRefused, TokenVerifier

TOO_MANY_ATTEMPTS = "too many attempts"
MISSING_APP_TOKEN = "missing appToken"
INVALID_APP_TOKEN = "invalid appToken"
SERVER_FULL = "server full"


class Admission:
    """Checks a CONNECT; a refusal raises :class:`ConnectRefused` and is counted."""

    __slots__ = ("_config", "_clock", "_metrics", "_local", "_tokens", "_self_check", "failed_attempts")

    def __init__(
        self, config: Config, clock: IReactorTime, metrics: Metrics, local: LocalConnections,
        tokens: Optional[TokenVerifier] = None, self_check: str = "",
    ) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._local = local
        #: Per-user tokens (None: none required) and the self-check's stand-in for one.
        self._tokens = tokens
        self._self_check = self_check.encode("utf-8")
        self.failed_attempts = FailedAttempts(config.connect_failures_per_ip, config.connect_failure_window)

    def admit(self, remote: str, auth: dict[str, Any], returning: bool = False) -> Optional[Claims]:
        """Let a client in (with what its token says), or raise ConnectRefused with the reason it sees.

        ``returning``: it takes back a session it lost (a resume); it is
        checked as a connect is, but it already holds its place (capacity).
        """
        expected = self._config.app_token
        now = self._clock.seconds()
        # Brute force: once an address used up its failures, its tokens are not even looked at.
        if (expected or self._tokens is not None) and self.failed_attempts.blocked(remote, now):
            self.refuse(TOO_MANY_ATTEMPTS)
        if expected:
            token = auth.get("appToken")
            if not isinstance(token, str) or not token:
                self.failed_attempts.failed(remote, now)
                self.refuse(MISSING_APP_TOKEN)
            if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
                self.failed_attempts.failed(remote, now)
                self.refuse(INVALID_APP_TOKEN)
        claims = None
        if self._tokens is not None and not self._is_self_check(auth):
            try:
                claims = self._tokens.verify(auth.get("token"))
            except TokenRefused as refused:
                self.failed_attempts.failed(remote, now)
                self.refuse(refused.reason)
        if not returning and len(self._local) >= self._config.max_concurrent_users:
            self.refuse(SERVER_FULL)
        return claims

    def _is_self_check(self, auth: dict[str, Any]) -> bool:
        """GET /tests connects without a user: it shows this process's random secret instead."""
        given = auth.get("selfCheck")
        return bool(self._self_check) and isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), self._self_check)

    def refuse(self, reason: str) -> NoReturn:
        self._metrics.connect_refused(reason)
        raise ConnectRefused(reason)
