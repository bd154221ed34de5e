"""Portable column types."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

#: the text SQLAlchemy's SQLite ``DATETIME`` writes by default
_SQLITE_FORMAT = sqlite.DATETIME._storage_format
#: the same text, by position
_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python.

    Refuses naive values; SQLite keeps naive UTC text, PostgreSQL ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"timestamps must be aware datetimes, got {value!r}")
        utc: datetime = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one function that writes the text SQLAlchemy's ``DATETIME`` would
        (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC): ≈ 0.5 µs against ≈ 1.7 for
        :meth:`process_bind_param` and the dialect's format by name; a batch of 1,000
        jobs writes 4,000 timestamps. Elsewhere SQLAlchemy's chain as it is."""
        storage = getattr(self.impl_instance, "_storage_format", None)
        if dialect.name != "sqlite" or storage != _SQLITE_FORMAT:
            return super().bind_processor(dialect)
        return _sqlite_text

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_text(value: Any) -> str | None:
    """An aware datetime as SQLite's naive UTC text (see ``UtcDateTime.bind_processor``).
    The texts of the last two values are kept: an insert writes one ``now`` several
    times (a job's ``created_at``, ``updated_at``, its event's ``at``; a batch's jobs
    share it) and a batch's jobs often one ``scheduled_at`` (equal values, each its own
    object, written between the ``now``s). An equal aware datetime is the same instant:
    the same UTC text."""
    global _recent
    if value is None:
        return None
    last, before = _recent  # one tuple, read and replaced whole: safe between threads
    if value is last[0] or value == last[0]:
        return last[1]
    if value is before[0] or value == before[0]:
        return before[1]
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"timestamps must be aware datetimes, got {value!r}")
    v = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = _TEXT % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
    _recent = ((value, text), last)
    return text


_NOTHING: tuple[object, str] = (object(), "")
_recent: tuple[tuple[object, str], tuple[object, str]] = (_NOTHING, _NOTHING)
