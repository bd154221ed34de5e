from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobyard.domain.priorities import Priority, sort_key

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_higher_priority_first_at_equal_age() -> None:
    keys = [
        sort_key(T0, p, 300)
        for p in (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL)
    ]
    assert keys == sorted(keys, reverse=True)


def test_old_low_job_beats_new_critical_job() -> None:
    low = sort_key(T0, Priority.LOW, 300)
    critical_soon = sort_key(T0 + timedelta(seconds=899), Priority.CRITICAL, 300)
    critical_later = sort_key(T0 + timedelta(seconds=901), Priority.CRITICAL, 300)
    assert critical_soon < low < critical_later
