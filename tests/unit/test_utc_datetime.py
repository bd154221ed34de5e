"""``UtcDateTime``'s own SQLite bind processor writes exactly the text SQLAlchemy's chain
(``process_bind_param`` then the dialect's ``DATETIME``) writes, and refuses the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from jobyard.store.types import UtcDateTime

DIALECT = sqlite.dialect()
FAST = UtcDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
_IMPL: Any = UtcDateTime().dialect_impl(DIALECT)
CHAIN = sa.TypeDecorator.bind_processor(_IMPL, DIALECT)
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def test_sqlite_has_its_own_processor() -> None:
    assert FAST is not None and CHAIN is not None and FAST is not CHAIN


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.one_of(st.just(UTC), OFFSETS),
    )
)
def test_the_same_text_as_sqlalchemy(value: datetime) -> None:
    assert FAST is not None and CHAIN is not None
    assert FAST(value) == CHAIN(value)


def test_none_and_midnight() -> None:
    assert FAST is not None
    assert FAST(None) is None
    assert FAST(datetime(2099, 1, 1, tzinfo=UTC)) == "2099-01-01 00:00:00.000000"
    east = timezone(timedelta(hours=2))
    assert FAST(datetime(2026, 1, 1, 1, 30, tzinfo=east)) == "2025-12-31 23:30:00.000000"


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), "2026-01-01", 0])
def test_refuses_what_the_chain_refuses(bad: Any) -> None:
    assert FAST is not None and CHAIN is not None
    with pytest.raises(ValueError, match="aware datetimes"):
        FAST(bad)
    with pytest.raises(ValueError, match="aware datetimes"):
        CHAIN(bad)


def test_the_kept_text_is_only_that_of_the_same_value() -> None:
    """A kept text is answered again for that value or an equal one (in another zone:
    the same instant, the same text), not for another value."""
    assert FAST is not None
    now = datetime(2026, 12, 7, 10, 0, 0, 123, tzinfo=UTC)
    assert FAST(now) == FAST(now) == "2026-12-07 10:00:00.000123"
    east = now.astimezone(timezone(timedelta(hours=5)))
    assert FAST(east) == "2026-12-07 10:00:00.000123"
    later = now + timedelta(microseconds=1)
    assert [FAST(later), FAST(now), FAST(later)] == [
        "2026-12-07 10:00:00.000124",
        "2026-12-07 10:00:00.000123",
        "2026-12-07 10:00:00.000124",
    ]


@given(
    st.lists(
        st.datetimes(
            min_value=datetime(2098, 1, 1),
            max_value=datetime(2099, 1, 2),
            timezones=st.one_of(st.just(UTC), OFFSETS),
        ),
        max_size=12,
    )
)
def test_a_sequence_of_values_each_gets_its_own_text(values: list[datetime]) -> None:
    """The last two texts are kept (a batch row's ``scheduled_at`` between its ``now``s):
    any order of values, repeated or not, gives each value the chain's text."""
    assert FAST is not None and CHAIN is not None
    assert [FAST(v) for v in values] == [CHAIN(v) for v in values]


def test_a_naive_value_after_the_same_aware_one_is_refused() -> None:
    assert FAST is not None
    FAST(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="aware datetimes"):
        FAST(datetime(2026, 1, 1))
