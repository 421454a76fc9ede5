"""The seams of jsongle, as zope interfaces.

* :class:`ISocketApplication`: what the Socket.IO layer calls; it never sees
  JSONgle.
* :class:`IConnection`: one client connection as an application sees it;
  the Socket.IO layer provides it, the application never sees a frame.
* :class:`ISessionStore`: the resumable Socket.IO sessions this process holds,
  by private id; :class:`ISessionPark`: where one waits for its client to
  come back to another process of a cluster (Redis).
* :class:`IQueryHandler` / :class:`IActionHandler`: JSONgle handlers, found
  as Twisted plugins so a third-party package can add one.
* :class:`IRoomRegistry`: room state, so another backend (Redis) can replace
  the in-memory one.
* :class:`IMessageBus`: delivery to connections held by other processes of a
  cluster (nothing to do for one process alone).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zope.interface import Attribute, Interface


class ConnectRefused(Exception):
    """Raised by an application's ``connect`` to refuse a client.

    The client's ``connect_error`` handler sees ``message`` (and ``data``).
    """

    def __init__(self, message: str, data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class IConnection(Interface):
    """One client connection, as the application bound to it sees it."""

    id = Attribute(
        "The connection's opaque id (the Socket.IO socket id): unique while it "
        "lives, any string; the 'to' of what is sent to it."
    )
    transport = Attribute("The name of the transport carrying it now: 'polling' or 'websocket'.")
    remote = Attribute("The client's address, as text.")
    received_size = Attribute("Encoded bytes of the message being handled (traffic counters).")
    state = Attribute("Free for the application: its per-connection state.")

    def send(message):
        """Send one message (a JSON-able object) as the application's event.

        Returns the bytes written, so traffic is counted without encoding twice.
        """

    def send_json(data):
        """Send one message already encoded as UTF-8 JSON (``bytes``).

        For one body encoded once and sent to many connections; returns the
        bytes written, like :meth:`send`.
        """

    def close():
        """End the connection from the server side (a kick: the client does
        not come back by itself)."""


class ISocketApplication(Interface):
    """An application bound to one Socket.IO namespace."""

    event_name = Attribute("The event its messages travel as, both ways (``IConnection.send``).")

    def connect(connection, auth):
        """A client asks to connect with ``auth`` (a dict); ``connection``
        provides :class:`IConnection`.

        Raise :class:`ConnectRefused` (or fail the returned Deferred with it)
        to refuse.  Messages sent before returning are delivered after the
        CONNECT reply.
        """

    def event(connection, name, args, ack):
        """An event arrived; ``ack`` is a callable, or None when none was asked."""

    def disconnect(connection, reason):
        """The connection ended (``reason`` as Socket.IO names it); for a
        resumable one, also when its resume window passed while it was away."""

    def away(connection, reason):
        """A resumable connection lost its transport (``reason``): it may come
        back within its resume window, so it keeps its state and its rooms.
        What is sent to it meanwhile is kept and delivered when it comes back;
        :meth:`disconnect` follows if it does not."""

    def resume(connection, remote, auth):
        """A client asks to take ``connection`` back (it presented its private
        session id) from address ``remote``, with the ``auth`` of its CONNECT.

        Authenticate it as :meth:`connect` would: raise :class:`ConnectRefused`
        (or fail the returned Deferred with it) to refuse. Once accepted, the
        connection carries on with the state it had.
        """


    def export(connection):
        """The state of a resumable ``connection`` as JSON-able data, for
        another process to carry it on (:meth:`adopt`)."""

    def admit_resume(state, remote, auth):
        """A client asks to take over, on this process, a session exported
        elsewhere with ``state``: authenticate it as :meth:`resume` would
        (raise :class:`ConnectRefused` to refuse). Returns what :meth:`adopt`
        needs besides the state."""

    def adopt(connection, state, admitted):
        """``connection`` (same id as the session it takes over) carries on
        here with the exported ``state``: registered, in its rooms, as if it
        had always been here; ``admitted`` is what :meth:`admit_resume` returned."""

    def handed_off(connection):
        """``connection``'s session went to another process (its rooms still
        list it): it is no longer this process's user; what is still sent
        to it here is forwarded (:meth:`IConnection.send` does it) until
        :meth:`forget`."""

    def forget(connection):
        """Stop forwarding to a connection handed off a while ago."""


class ISessionStore(Interface):
    """Resumable Socket.IO sessions by their private id (``pid``), so a client
    that lost its transport can take its session back.

    The in-memory store serves one process; a shared one (Redis) can replace
    it so that the client may come back to another process. A session has
    ``pid`` (unguessable, known only to its client and the server) and
    ``connection`` (the :class:`IConnection` it carries).
    """

    def add(session):
        """Keep a new resumable session under its pid."""

    def get(pid):
        """The session kept under ``pid``, or None (or a Deferred firing with either)."""

    def remove(session):
        """Forget ``session`` (it ended or its window passed); a newer
        session kept under the same pid stays."""

    def __len__():
        """How many sessions are kept."""

    def __iter__():
        """The sessions kept, in no order."""


class ParkedSession(NamedTuple):
    """A resumable session as another process takes it over."""

    pid: str
    sid: str
    namespace: str
    #: What the application exported (JSON-able).
    state: Any
    #: Offsets of the first and last packet kept (first = last + 1: none kept).
    first: int
    last: int


class ISessionPark(Interface):
    """Where a resumable session waits when its client may come back to
    another process of a cluster, and how that process takes it over."""

    available = Attribute("Whether sessions can be parked and found now.")

    def serve(holder):
        """``holder(pid, asker, remote, auth)`` is called when a client of
        another process presents session ``pid``: it parks it (returning True)
        if it is held here and admits the client (else raises ConnectRefused)."""

    def park(session, items, asker):
        """Park a :class:`ParkedSession` with its packets ``items`` (encoded,
        offsets ``first``..``last``); ``asker`` is the process that asked, or
        ''. The Deferred fires once messages sent here before are kept."""

    def append(pid, sid, head, body):
        """Keep a message (the packet's ``head``, then the message's JSON
        ``body``) for a parked session under its next offset, or forward it
        to the process that took it over."""

    def peek(pid):
        """Deferred: ``{"sid", "ns", "state"}`` of parked session ``pid``, or None."""

    def ask(pid, remote, auth):
        """Deferred: asks the other processes to park ``pid`` for a client at
        ``remote`` with ``auth``; True once parked, False if none holds it;
        fails with ConnectRefused when the holder refused the client."""

    def claim(pid, offset, namespace):
        """Deferred: take parked session ``pid`` over from ``offset``: fires
        with ``{"sid", "state", "last", "missed"}``, or None when it cannot."""


class IQueryHandler(Interface):
    """Answers one JSONgle query sent to the server."""

    query = Attribute("The query name, e.g. 'session-join'.")
    action = Attribute(
        "'iq-set' for a client request answered with iq-result/iq-error, or "
        "'iq-result' for the client's answer to a server iq-get (session-hello)."
    )

    def handle(request):
        """Handle ``request`` (an IHandlerRequest).

        For 'iq-set', return the result description (a dict, or a Deferred
        firing with one) or raise ``JsongleError`` for an iq-error.
        """


class IActionHandler(Interface):
    """Handles one JSONgle action sent to a room (or to the server)."""

    action = Attribute("The action name, e.g. 'session-propose'.")
    call = Attribute(
        "True for call set-up actions: alone in a P2P room, the sender gets "
        "session-info 'unreachable' instead of error 404003."
    )

    def handle(request):
        """Handle ``request`` (an IHandlerRequest); may return a Deferred."""


class IMember(Interface):
    """The sender of a message: one connection and, after its hello, an identity."""

    connection_id = Attribute("The connection's id (IConnection.id).")
    uid = Attribute("The user id from its hello, or None before it.")
    registered = Attribute("True once a valid hello was received.")
    identity = Attribute("What other members are shown of it (the hello description); after hello only.")
    ref = Attribute("Its RoomMember (what room registries hold); after hello only.")
    claims = Attribute(
        "What its per-user token says (jsongle.signaling.tokens.Claims: sub, name, rooms, expires), "
        "or None when the server takes no per-user tokens."
    )

    def register(uid, identity):
        """Record a valid hello: ``identity`` is the description others see."""


class IHandlerRequest(Interface):
    """Everything a handler may use, and only that; handlers never see a transport."""

    message = Attribute("The received JSONgle message (a dict).")
    jsongle = Attribute("message['jsongle'], checked to be a dict.")
    member = Attribute("The sending IMember.")
    room = Attribute("The target Room snapshot, or None when sent to the server.")
    addressee = Attribute(
        "The uid of the one member the message is for (``to`` = ``<rid>/<uid>``), "
        "or None when it is for the whole room (or the server)."
    )
    rooms = Attribute("The IRoomRegistry.")
    config = Attribute("The server Config.")
    metrics = Attribute("The Metrics.")
    clock = Attribute("An IReactorTime.")
    server_id = Attribute("The server's own id (config 'id'): the 'from' of what it builds.")
    messages = Attribute(
        "Builds the messages the server sends (jsongle.signaling.messages.Messages): "
        "a fresh id each, the server id as 'from'."
    )
    calls = Attribute(
        "The calls in progress (jsongle.signaling.calls.Calls): accepted(rid, kind, "
        "sid, parties) and terminated(rid, sid) keep the call gauges."
    )
    reply_to = Attribute(
        "The 'to' of answers: the sender's 'from' when it is a string, else its "
        "connection id (echoed only; reply() delivers to the real connection)."
    )

    def reply(message):
        """Send a message to the sender's connection."""

    def error(code, details):
        """Answer the sender with a session-error ``{errorCode, errorDetails}``."""

    def send(connection_id, message):
        """Send a message to a connection of this process by its id."""

    def send_to(member, message):
        """Send a message to a room member (a RoomMember), on whichever node it is."""

    def relay(message):
        """Copy ``message`` to the target room's other members, ``from`` and
        ``to`` rewritten; returns how many copies went."""

    def announce_join(rid, kind, member, targets):
        """Tell ``targets`` (RoomMembers) that ``member`` joined room ``rid`` of ``kind``."""

    def announce_leave(result):
        """Tell the remaining members of a LeaveResult that its member left."""

    def now():
        """The current date as an ISO-8601 UTC string with milliseconds."""


class IRoomRegistry(Interface):
    """Room membership and caps.  Mutations return Deferreds (they may be remote)
    and may fail with JsongleError 503001 when the shared state is unreachable."""

    def join(rid, kind, member):
        """Add ``member`` (a RoomMember) to room ``rid`` of ``kind`` ('room' or 'muc').

        Fires with a JoinResult; fails with JsongleError for full rooms, the
        per-user MUC cap or a kind mismatch.
        """

    def leave(rid, connection_id):
        """Remove a connection from a room; fires with a LeaveResult or fails
        with JsongleError 404002 when it is not a member."""

    def leave_all(connection_id):
        """Remove a connection from every room; fires with a list of LeaveResult."""

    def room(rid):
        """A Room snapshot (kind, members) or None; synchronous: relays need it per message.

        A registry shared by several processes answers for the rooms with a
        member in this process, which is all a relay from here can target.
        """

    def room_count():
        """How many non-empty rooms exist (with a member in this process, when shared)."""


class IMessageBus(Interface):
    """Carries messages to connections that other nodes of a cluster hold."""

    node_id = Attribute("This process's node id (RoomMember.node of its own members).")

    def send(node, connection_id, message):
        """Deliver ``message`` to ``connection_id`` on ``node``; fire and forget.

        What other nodes send to this one is handed to the local delivery the
        bus was built with."""
