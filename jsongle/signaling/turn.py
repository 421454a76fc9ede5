"""TURN credentials for clients: coturn's REST API convention (``use-auth-secret``).

The server and the TURN server share one secret and nothing else: a
credential is ``username = "<expiry>:<user>"`` and ``credential =
base64(HMAC-SHA1(secret, username))``, which coturn recomputes on each
allocation and refuses once ``expiry`` (Unix seconds) has passed. The
list handed out is what ``new RTCPeerConnection({iceServers})`` takes
(PROTOCOL.md §12).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from jsongle.config import Config, ConfigError

__all__ = ["IceServers", "ice_servers_from_config", "turn_credential"]


def turn_credential(secret: bytes, username: str) -> str:
    """base64 HMAC-SHA1 of ``username`` keyed with the shared secret."""
    return base64.b64encode(hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


class IceServers:
    """The STUN and TURN servers clients are told about, with fresh credentials."""

    def __init__(self, secret: str, turn_uris: tuple[str, ...], stun_uris: tuple[str, ...], ttl: float) -> None:
        self._secret = secret.encode("utf-8")
        self.turn_uris = turn_uris
        self.stun_uris = stun_uris
        self.ttl = ttl

    @property
    def turn(self) -> bool:
        """Whether TURN credentials are handed out (a secret and URIs)."""
        return bool(self._secret and self.turn_uris)

    def ice_servers(self, user: str, now: float) -> list[dict[str, Any]]:
        """The ``iceServers`` list for ``user``, valid for ``ttl`` from ``now``.

        The STUN entry comes only with stunUris, the TURN entry only with
        TURN configured: without either the list is empty.
        """
        servers: list[dict[str, Any]] = []
        if self.stun_uris:
            servers.append({"urls": list(self.stun_uris)})
        if self.turn:
            username = f"{int(now + self.ttl)}:{user}"
            servers.append({"urls": list(self.turn_uris), "username": username, "credential": turn_credential(self._secret, username)})
        return servers

    def __repr__(self) -> str:
        # Never the secret: this may end up in a log.
        return f"IceServers(turn={list(self.turn_uris)!r}, stun={list(self.stun_uris)!r}, ttl={self.ttl}, secret={'***' if self._secret else ''})"


def ice_servers_from_config(config: Config) -> IceServers:
    """The servers of the configuration; half a TURN setup stops the start by name."""
    if config.turn_secret and not config.turn_uris:
        raise ConfigError("turnUris", "", "is empty but turnSecret is set: give the TURN server's URIs")
    if config.turn_uris and not config.turn_secret:
        raise ConfigError("turnSecret", "", "is empty but turnUris is set: give the TURN server's static-auth-secret")
    return IceServers(config.turn_secret, config.turn_uris, config.stun_uris, config.turn_ttl)
