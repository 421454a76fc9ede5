"""Resumable sessions any process of a cluster can take over.

A session stays in the memory of the process that holds it while it lives,
and while it is away on that process: relays pay nothing for it. It goes to
Redis only when another process must be able to take it: when its process
drains (SIGTERM), or when its client comes back to another process, which
asks the holder for it. There it is *parked*: its state, offsets and packets
in ``park:<pid>`` and ``parklog:<pid>``, and in its rooms it becomes node
``~<pid>``, alive for the resume window. A message for a parked session is
appended under the next offset by a Lua script (one round trip per message,
only while parked), and once it is taken over the same script forwards it to
the new holder. The process that claims it hears ``claimed`` on its own
channel, so the missed packets come before anything forwarded afterwards,
and the heartbeat sweeps a session whose window passed as it sweeps a dead
node: its rooms hear ``left`` from whichever process sweeps first.

Lists rather than Streams: the log is read once, whole, from an offset, and
deleted; Streams' ids, consumer groups and trimming would buy nothing here.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from jsongle.cluster import scripts
from jsongle.cluster.link import RedisLink
from jsongle.interfaces import ConnectRefused, ISessionPark, ParkedSession

#: Node names of parked sessions start with this (node ids cannot: they are
#: host names, process ids and hex).
PARKED = "~"


def parked_node(pid: str) -> str:
    return PARKED + pid


def is_parked_node(node: str) -> bool:
    return node[:1] == PARKED


class _Asking:
    """A request to the other nodes for a session: done when its holder parked
    it, or when every node that heard said it does not hold it."""

    __slots__ = ("waiter", "remaining", "timer")

    def __init__(self, waiter: Deferred) -> None:
        self.waiter = waiter
        self.remaining: Optional[int] = None
        self.timer: Any = None


@implementer(ISessionPark)
class RedisSessionPark:
    """Parks, finds and hands over resumable sessions through Redis.

    ``on_outcome("expired")`` counts each parked session this node swept
    when its window passed; ``head`` is how a packet of the application's
    event starts (up to its JSON argument), to keep messages as packets.
    """

    log = Logger()

    def __init__(
        self, link: RedisLink, node_id: str, window: float, buffer_bytes: int, reply_timeout: float,
        on_outcome: Callable[[str], None], head: bytes,
    ) -> None:
        self.link = link
        self.on_outcome = on_outcome
        #: The start of the packet a message is kept as (up to its JSON).
        self.head = head
        self.node_id = node_id
        self.window_ms = str(max(1, int(window * 1000)))
        self.buffer_bytes = str(buffer_bytes)
        self.reply_timeout = reply_timeout
        self._holder: Optional[Callable[[str, str, str, dict[str, Any]], bool]] = None
        self._asking: dict[str, _Asking] = {}
        self._claims: dict[str, Deferred] = {}
        #: Parks under way by pid: fire once this node heard ``parked``.
        self._parking: dict[str, Deferred] = {}

    def serve(self, holder: Callable[[str, str, str, dict[str, Any]], bool]) -> None:
        """ISessionPark: ``holder(pid, asker, remote, auth)`` parks the session
        ``pid`` if it is held here and its client is admitted."""
        self._holder = holder

    @property
    def available(self) -> bool:
        return self.link.up

    # -- the holder's side -------------------------------------------------

    def park(self, session: ParkedSession, items: Sequence[bytes], asker: str = "") -> Deferred:
        """ISessionPark: park ``session``; fires once every message sent to
        this node before the park has reached it (they were kept)."""
        args = [
            session.pid, session.sid, session.namespace, json.dumps(session.state, separators=(",", ":")),
            str(session.first), str(session.last), self.window_ms, self.node_id, asker, str(sum(map(len, items))),
            *items,
        ]
        waiter: Deferred = Deferred()
        self._parking[session.pid] = waiter
        # The marker may not come (the subscription just broke): the park
        # itself is done once the script answered.
        self.link.clock.callLater(self.reply_timeout, self._parked, session.pid, waiter)
        sent = self.link.script(scripts.PARK, [], args)

        def failed(failure: Any) -> Any:
            if self._parking.get(session.pid) is waiter:
                del self._parking[session.pid]
            return failure

        sent.addErrback(failed)
        sent.addCallback(lambda _: waiter)
        return sent

    def append(self, pid: str, sid: str, head: bytes, body: bytes) -> None:
        """ISessionPark: keep a message for a parked session (or forward it to its new holder)."""
        answer = self.link.script(scripts.APPEND, [], [pid, sid, head, body, self.buffer_bytes])
        answer.addErrback(lambda failure: self.log.warn(
            "a message for parked session {sid} is lost: {why}", sid=sid, why=failure.getErrorMessage()
        ))

    def keep_message(self, pid: str, sid: str, message: dict[str, Any]) -> None:
        """A message from this process for a member parked as node ``~<pid>``."""
        self.append(pid, sid, self.head, json.dumps(message, separators=(",", ":")).encode("utf-8"))

    # -- the taker's side --------------------------------------------------

    def peek(self, pid: str) -> Deferred:
        """ISessionPark: ``{"sid", "ns", "state"}`` of the parked session ``pid``, or None."""
        if not self.link.up:
            return succeed(None)
        found = self.link.command("HMGET", scripts.PREFIX + "park:" + pid, "sid", "ns", "state")

        def read(values: Any) -> Optional[dict[str, Any]]:
            if not values or values[0] is None:
                return None
            return {"sid": values[0], "ns": values[1], "state": json.loads(values[2])}

        return found.addCallback(read)

    def ask(self, pid: str, remote: str, auth: dict[str, Any]) -> Deferred:
        """ISessionPark: ask the other nodes to park ``pid`` for a client at
        ``remote`` with ``auth`` (its holder admits it first); fires with True
        once parked, False when no node holds it (or none answered in time),
        or fails with ConnectRefused when the holder refused the client."""
        if not self.link.up:
            return succeed(False)
        if pid in self._asking:
            return _chain(self._asking[pid].waiter)
        asking = _Asking(Deferred())
        self._asking[pid] = asking
        asking.timer = self.link.clock.callLater(self.reply_timeout, self._answered, pid, False)

        def heard(count: Any) -> None:
            asking.remaining = int(count)
            if asking.remaining <= 0:
                self._answered(pid, False)

        request = json.dumps({"remote": remote, "auth": auth}, separators=(",", ":"))
        self.link.script(scripts.ASK, [], [pid, self.node_id, request]).addCallbacks(
            heard, lambda _: self._answered(pid, False)
        )
        return _chain(asking.waiter)

    def claim(self, pid: str, offset: int, namespace: str) -> Deferred:
        """ISessionPark: take the parked session ``pid`` over; fires with
        ``{"sid", "state", "last", "missed"}`` as this node's channel delivers
        it (before anything forwarded to it later), or None."""
        if not self.link.up or pid in self._claims:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._claims[pid] = waiter

        def answered(outcome: Any) -> Any:
            if outcome == "ok":
                return waiter  # the claimed message follows on the channel
            self._claims.pop(pid, None)
            return None

        def failed(failure: Any) -> None:
            self._claims.pop(pid, None)
            self.log.warn("taking session over failed: {why}", why=failure.getErrorMessage())

        return self.link.script(scripts.CLAIM, [], [pid, str(offset), self.node_id, namespace]).addCallbacks(
            answered, failed
        )

    # -- this node's channel -----------------------------------------------

    def received(self, envelope: dict[str, Any]) -> None:
        """A session message on this node's channel (ClusterNode routes them here)."""
        kind, pid = envelope["t"], envelope["pid"]
        if kind == "park?":
            request = json.loads(envelope["request"])
            self._requested(pid, envelope["by"], request["remote"], request["auth"])
        elif kind == "parked":
            waiter = self._parking.get(pid)
            if waiter is not None:
                self._parked(pid, waiter)
            if pid in self._asking:
                self._answered(pid, True)
        elif kind == "refused":
            self._answered(pid, ConnectRefused(envelope["message"]))
        elif kind == "not-here":
            asking = self._asking.get(pid)
            if asking is not None and asking.remaining is not None:
                asking.remaining -= 1
                if asking.remaining <= 0:
                    self._answered(pid, False)
        elif kind == "claimed":
            waiter = self._claims.pop(pid, None)
            if waiter is not None:
                missed = envelope["missed"]
                waiter.callback({
                    "sid": envelope["sid"], "state": json.loads(envelope["state"]), "last": int(envelope["last"]),
                    "missed": [item.encode("utf-8") for item in missed] if isinstance(missed, list) else [],
                })

    def expired(self, node: str, members: int) -> None:
        """This node swept parked session ``node`` (its window passed): its rooms heard ``left``."""
        self.log.info(
            "parked session {sid} not resumed (resume window passed): it left {count} room(s)",
            sid=node[1:9] + "...", count=members,
        )
        self.on_outcome("expired")

    def _parked(self, pid: str, waiter: Deferred) -> None:
        if self._parking.get(pid) is waiter:
            del self._parking[pid]
        if not waiter.called:
            waiter.callback(None)

    def _requested(self, pid: str, asker: str, remote: str, auth: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"t": "not-here", "pid": pid}
        if self._holder is not None:
            try:
                if self._holder(pid, asker, remote, auth):
                    return  # parking: the PARK script tells the asker
            except ConnectRefused as refusal:
                answer = {"t": "refused", "pid": pid, "message": refusal.message}
            except Exception:
                self.log.failure("parking a session on request failed")
        self.link.publish(scripts.PREFIX + "node:" + asker, json.dumps(answer, separators=(",", ":")))

    def _answered(self, pid: str, parked: Any) -> None:
        """The ask is over: True (parked), False (nobody holds it) or the holder's refusal."""
        asking = self._asking.pop(pid, None)
        if asking is None:
            return
        if asking.timer is not None and asking.timer.active():
            asking.timer.cancel()
        if isinstance(parked, ConnectRefused):
            asking.waiter.errback(parked)
        else:
            asking.waiter.callback(parked)


def _chain(source: Deferred) -> Deferred:
    """A Deferred that fires with ``source``'s result, leaving ``source`` as it is."""
    copy: Deferred = Deferred()

    def fire(result: Any) -> Any:
        if isinstance(result, Failure):
            copy.errback(result)
            return None
        copy.callback(result)
        return result

    source.addBoth(fire)
    return copy
