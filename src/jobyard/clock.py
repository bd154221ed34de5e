"""The one place where jobyard reads the time.

Everything that needs "now" takes a :class:`Clock`; production code uses
:class:`SystemClock`, tests pass a :class:`ManualClock` they can move.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    """Source of aware UTC datetimes."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


def utcnow() -> datetime:
    """Wall-clock now, for code that has no injected clock (CLI display only)."""
    return datetime.now(UTC)


@overload
def ensure_utc(value: datetime) -> datetime: ...
@overload
def ensure_utc(value: datetime | None) -> datetime | None: ...
def ensure_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime; naive values are taken as UTC (a time
    a client sent without a zone), None stays None."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@overload
def elapsed_ms(start: datetime, end: datetime) -> int: ...
@overload
def elapsed_ms(start: datetime | None, end: datetime | None) -> int | None: ...
def elapsed_ms(start: datetime | None, end: datetime | None) -> int | None:
    """Whole milliseconds from ``start`` to ``end`` (0 when ``end`` is earlier); None
    when either is missing."""
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of seconds since the epoch (a file's mtime, e.g.)."""
    return datetime.fromtimestamp(seconds, UTC)


def to_epoch(value: datetime) -> float:
    """Seconds since the epoch of an aware datetime."""
    return ensure_utc(value).timestamp()
