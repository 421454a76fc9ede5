"""Registers jsongle's built-in JSONgle handlers as Twisted plugins.

``twisted.plugin.getPlugins`` finds module-level providers of IPlugin, so each
built-in handler is bound to a module name here (``session_join``, ...).
"""

from jsongle.signaling.builtin import builtin_actions, builtin_queries

for _handler in builtin_queries():
    globals()[_handler.query.replace("-", "_")] = _handler
for _handler in builtin_actions():
    globals()[_handler.action.replace("-", "_")] = _handler
del _handler
