"""The ``ice-servers`` query: fresh STUN/TURN credentials for a registered user.

A client in a long session asks again before an ICE restart, since the
credentials of its hello expire after ``turnTtl``. It is an ``iq-get``
(it reads, it changes nothing) answered with ``iq-result {"iceServers":
[...]}``, the TURN username naming the user's ``uid`` (PROTOCOL.md §12).
A plugin like any other: it uses only what ``IHandlerRequest`` offers.
"""

from __future__ import annotations

from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from jsongle.interfaces import IQueryHandler
from jsongle.signaling.messages import IQ_GET
from jsongle.signaling.turn import IceServers

__all__ = ["IceServersHandler"]


@implementer(IPlugin, IQueryHandler)
class IceServersHandler:
    """``iq-get`` ``ice-servers``: the STUN entry and TURN credentials, or an empty list."""

    query = "ice-servers"
    action = IQ_GET

    def handle(self, request: Any) -> dict[str, Any]:
        config = request.config
        # The settings were checked at start-up; building the list is a hash and a dict.
        servers = IceServers(config.turn_secret, config.turn_uris, config.stun_uris, config.turn_ttl)
        return {"iceServers": servers.ice_servers(request.member.uid, request.clock.seconds())}
