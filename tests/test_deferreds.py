"""jsongle.deferreds.result_now: a fired Deferred's value, or PENDING."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from jsongle.deferreds import PENDING, result_now


def test_the_value_of_a_fired_deferred():
    assert result_now(succeed({"rid": "r"})) == {"rid": "r"}
    assert result_now(succeed(None)) is None


def test_pending_when_not_fired_or_callbacks_remain():
    waiting: Deferred[int] = Deferred()
    assert result_now(waiting) is PENDING
    waiting.callback(1)
    assert result_now(waiting) == 1
    paused = succeed(2)
    paused.pause()
    assert result_now(paused) is PENDING
    inner: Deferred[int] = Deferred()
    chained = succeed(3)
    chained.addCallback(lambda _: inner)
    assert result_now(chained) is PENDING
    inner.callback(4)
    assert result_now(chained) == 4


def test_a_failure_is_left_to_the_errbacks():
    failed = fail(ValueError("no"))
    assert result_now(failed) is PENDING
    caught = []
    failed.addErrback(lambda failure: caught.append(failure.check(ValueError)))
    assert caught == [ValueError]
