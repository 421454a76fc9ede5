"""Running the handler a message is for, and turning what it raises into answers.

A query gets ``iq-result`` or ``iq-error``; an action's failure gets a
``session-error``; anything unexpected is logged and answered 500001.
"""

from __future__ import annotations

from inspect import iscoroutine
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jsongle.deferreds import PENDING, result_now
from jsongle.metrics import Metrics
from jsongle.signaling import errors
from jsongle.signaling.errors import JsongleError
from jsongle.signaling.handlers import HandlerSet
from jsongle.signaling.messages import IQ_ERROR, IQ_RESULT, MISSING, Messages, js_string
from jsongle.signaling.request import HandlerRequest


class Dispatcher:
    """Calls handlers and maps their outcome to JSONgle answers."""

    log = Logger()

    __slots__ = ("handlers", "_messages", "_metrics")

    def __init__(self, handlers: HandlerSet, messages: Messages, metrics: Metrics) -> None:
        self.handlers = handlers
        self._messages = messages
        self._metrics = metrics

    def unsupported(self, request: HandlerRequest) -> None:
        """5. no handler for the action: 405001."""
        request.error(errors.ACTION_NOT_ALLOWED, f"Message of type {js_string(request.jsongle.get('action', MISSING))} is not supported")

    def query(self, request: HandlerRequest, action: str) -> None:
        """An iq-set (answered) or an iq-result (the client's answer to our iq-get)."""
        query = request.jsongle.get("query")
        handler = self.handlers.query(action, query)
        if action == IQ_RESULT:
            if handler is not None:
                self.run(handler, request)
            return
        if handler is None:
            shown = js_string(request.jsongle.get("query", MISSING))
            self._answer(request, IQ_ERROR, JsongleError(errors.UNKNOWN_QUERY, f"The query '{shown}' is not supported").describe())
            return
        try:
            result = handler.handle(request)
        except Exception:
            self._query_failed(Failure(), request)
            return
        if isinstance(result, Deferred):  # what the room registry answers
            value = result_now(result)
            if value is PENDING:
                result.addCallbacks(self._result, self._query_failed, callbackArgs=(request,), errbackArgs=(request,))
            else:
                self._answer(request, IQ_RESULT, value)
        elif isinstance(result, Failure) or iscoroutine(result):
            maybeDeferred(lambda: result).addCallbacks(self._result, self._query_failed, callbackArgs=(request,), errbackArgs=(request,))
        else:
            self._answer(request, IQ_RESULT, result)

    def run(self, handler: Any, request: HandlerRequest) -> None:
        """Call a handler; most answer at once, without a Deferred."""
        try:
            result = handler.handle(request)
        except Exception:
            self._failed(Failure(), request)
            return
        if result is not None:
            maybeDeferred(lambda: result).addErrback(self._failed, request)

    def _result(self, result: Any, request: HandlerRequest) -> None:
        self._answer(request, IQ_RESULT, result)

    def _answer(self, request: HandlerRequest, action: str, description: Any) -> None:
        jsongle = request.jsongle
        if action == IQ_ERROR:
            code = description.get("errorCode") if isinstance(description, dict) else None
            self._metrics.iq_errors(str(code)).inc()
        request.reply(self._messages.iq(request.reply_to, action, jsongle.get("transaction"), jsongle.get("query"), description))

    def _query_failed(self, failure: Failure, request: HandlerRequest) -> None:
        if failure.check(JsongleError):
            self._answer(request, IQ_ERROR, failure.value.describe())
        else:
            self._failed(failure, request)

    def _failed(self, failure: Failure, request: HandlerRequest) -> None:
        if failure.check(JsongleError):
            request.error(failure.value.code, failure.value.details)
            return
        self.log.failure("handler failed on a message from {sid}", failure, sid=request.member.connection_id)
        request.error(errors.INTERNAL_ERROR, "internal error")
