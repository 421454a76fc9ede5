"""The envelope helpers: dates as JavaScript writes them, and message ids."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from jsongle.dates import IsoDates, iso_date
from jsongle.randompool import RandomPool
from jsongle.signaling.messages import RandomIds

new_id = RandomIds(RandomPool()).new


def reference_date(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def test_iso_date_known_values():
    assert iso_date(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert iso_date(0) == "1970-01-01T00:00:00.000Z"
    # Rounded to the microsecond first, as datetime does: no "…:20.1000Z".
    assert iso_date(1_700_000_000.9999996) == "2023-11-14T22:13:21.000Z"


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_date_agrees_with_datetime(seconds):
    assert iso_date(seconds) == reference_date(seconds)


_dates = IsoDates().text


@given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=40))
def test_cached_dates_agree_with_datetime(times):
    """The cache of the last seconds and milliseconds never serves a stale text."""
    for seconds in times + times[::-1] + [times[0] + 0.0005, times[0] + 1]:
        assert _dates(seconds) == reference_date(seconds)


def test_new_id_is_a_version_4_uuid():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_random_pool_hands_out_fresh_bytes_across_refills():
    from jsongle.randompool import RandomPool

    pool = RandomPool(size=40)
    taken = [pool.take(15) for _ in range(20)]
    assert all(len(chunk) == 15 for chunk in taken)
    assert len(set(taken)) == 20
