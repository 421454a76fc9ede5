"""Registers jsongle's built-in JSONgle handlers as Twisted plugins.

``twisted.plugin.getPlugins`` finds module-level providers of IPlugin, so
each built-in handler is bound to a name of its own here.
"""

from jsongle.signaling.builtin import (
    AcceptHandler,
    AcknowledgedRelayHandler,
    EventHandler,
    HelloHandler,
    JoinHandler,
    LeaveHandler,
    MetricsHandler,
    MucJoinHandler,
    ProposeHandler,
    RelayHandler,
    TerminateHandler,
)

session_hello = HelloHandler()
session_join = JoinHandler()
muc_join = MucJoinHandler()
session_leave = LeaveHandler()

session_propose = ProposeHandler()
session_accept = AcceptHandler()
session_event = EventHandler()
session_text = AcknowledgedRelayHandler("session-text")
session_custom = AcknowledgedRelayHandler("session-custom")
session_metrics = MetricsHandler()
session_info = RelayHandler("session-info")
session_proceed = RelayHandler("session-proceed")
session_initiate = RelayHandler("session-initiate")
transport_info = RelayHandler("transport-info")
session_decline = RelayHandler("session-decline")
session_retract = RelayHandler("session-retract")
session_terminate = TerminateHandler()
