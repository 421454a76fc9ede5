"""The :class:`IMessageBus` of a cluster: one Redis pub/sub channel per node.

A node subscribes once, to its own channel, and a copy for a connection on
another node is published to that node's channel only.  Channels per room
would cost a SUBSCRIBE and UNSUBSCRIBE round trip on every join and leave and
reach every node of the room, target or not.  One command connection
publishes everything a node sends, and Redis forwards each channel's messages
in order, so a sender's messages arrive in the order it sent them.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from zope.interface import implementer

from jsongle.cluster.link import RedisLink
from jsongle.cluster.scripts import PREFIX
from jsongle.interfaces import IMessageBus


def node_channel(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


@implementer(IMessageBus)
class RedisBus:
    """Publishes copies for other nodes; hands those for this node to ``deliver``
    (``deliver(connection_id, message)``: this process's connections)."""

    def __init__(
        self, link: RedisLink, node_id: str, deliver: Callable[[str, dict[str, Any]], Any],
        keep: Callable[[str, str, dict[str, Any]], None],
    ) -> None:
        self.link = link
        self.node_id = node_id
        self._deliver = deliver
        #: ``keep(pid, connection_id, message)``: for a session parked in Redis
        #: (its node is ``~<pid>``) while its client comes back.
        self._keep = keep

    def send(self, node: str, connection_id: str, message: dict[str, Any]) -> None:
        if node[:1] == "~":
            self._keep(node[1:], connection_id, message)
            return
        data = json.dumps({"t": "msg", "to": connection_id, "m": message}, separators=(",", ":"))
        self.link.publish(node_channel(node), data)

    def received(self, envelope: dict[str, Any]) -> None:
        self._deliver(envelope["to"], envelope["m"])
