"""Fixed-delay timers on one reactor timer (jsongle.engineio.timers), on task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from jsongle.engineio.timers import FixedDelayTimers, active, cancel


def test_each_runs_exactly_its_delay_after_it_was_set_in_order():
    clock, ran = Clock(), []
    timers = FixedDelayTimers(clock, 25.0)
    timers.call_later(lambda: ran.append(("a", clock.seconds())))
    clock.advance(0.3)
    timers.call_later(lambda: ran.append(("b", clock.seconds())))
    timers.call_later(lambda: ran.append(("c", clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1 and len(timers) == 3
    clock.advance(24.699)
    assert ran == []
    clock.advance(0.001)
    assert [name for name, _ in ran] == ["a"] and abs(ran[0][1] - 25.0) < 1e-9
    clock.advance(0.299)
    assert len(ran) == 1
    clock.advance(0.001)
    assert [name for name, _ in ran] == ["a", "b", "c"] and abs(ran[-1][1] - 25.3) < 1e-9
    assert clock.getDelayedCalls() == [] and len(timers) == 0


def test_cancelled_ones_do_not_run_and_leave_no_reactor_timer():
    clock, ran = Clock(), []
    timers = FixedDelayTimers(clock, 20.0)
    first = timers.call_later(lambda: ran.append(1))
    second = timers.call_later(lambda: ran.append(2))
    cancel(first)
    assert not active(first) and active(second)
    clock.advance(20)
    assert ran == [2] and not active(second)
    cancel(second)  # after it ran: nothing
    third = timers.call_later(lambda: ran.append(3))
    cancel(third)
    cancel(None)
    assert clock.getDelayedCalls() == [] and len(timers) == 0
    clock.advance(100)
    assert ran == [2]


def test_a_failing_action_does_not_stop_the_others_and_actions_may_set_more():
    clock, ran = Clock(), []
    timers = FixedDelayTimers(clock, 5.0)

    def fail() -> None:
        raise RuntimeError("boom")

    def again() -> None:
        ran.append(("again", clock.seconds()))
        if len(ran) < 3:
            timers.call_later(again)

    timers.call_later(fail)
    timers.call_later(again)
    clock.advance(5)
    assert ran == [("again", 5.0)]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(5)
    clock.advance(5)
    assert ran == [("again", 5.0), ("again", 10.0), ("again", 15.0)]
    assert clock.getDelayedCalls() == []
