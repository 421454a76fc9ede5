"""Facts from the protocol reference that several tests check against."""

# PROTOCOL §5: call set-up actions (alone in a P2P room -> 'unreachable').
CALL_ACTIONS = (
    "session-propose",
    "session-info",
    "session-proceed",
    "session-initiate",
    "transport-info",
    "session-decline",
    "session-retract",
    "session-accept",
    "session-terminate",
)
