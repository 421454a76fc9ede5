"""Registers jsongle's built-in JSONgle handlers as Twisted plugins."""

from jsongle.signaling.builtin import builtin_actions, builtin_queries

_handlers = builtin_queries() + builtin_actions()
for _index, _handler in enumerate(_handlers):
    globals()[f"handler_{_index}"] = _handler
del _index, _handler
