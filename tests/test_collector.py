"""The collector settings the daemon applies once its reactor runs."""

from __future__ import annotations

import gc

from jsongle.collector import YOUNG_THRESHOLD, tune_collector


def test_start_up_objects_are_frozen_and_young_collections_spaced_out():
    before = gc.get_threshold()
    try:
        kept: list = [["made at start-up"]]
        assert gc.is_tracked(kept) and any(kept is other for other in gc.get_objects())
        tune_collector()
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        assert not any(kept is other for other in gc.get_objects())  # frozen: full collections skip it
        # What is made afterwards is collected as usual.
        later: list = []
        later.append(later)
        assert any(later is other for other in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
