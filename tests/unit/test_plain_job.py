"""A batch's job read without pydantic (``plain_job``) is what ``JobCreate`` makes of it
(``model_validate`` then ``to_plain``), or left to ``JobCreate``: never a job that
``JobCreate`` refuses, or reads otherwise."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from jobyard.api.schemas.jobs import JobCreate, plain_job
from jobyard.domain.jobs import PlainSpec

OFFSETS = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


def _time_text(at: datetime, timespec: str, form: int) -> str:
    """``at`` written in one of the forms a client may send (some not RFC 3339)."""
    text = at.isoformat(timespec=timespec)
    return [
        text,
        text.replace("+00:00", "Z"),
        text.replace("T", " "),
        text.lower(),
        re.sub(r"(\.\d)\d+", r"\1", text),  # one digit of a second's fraction
        text.replace(".", ".9", 1),  # seven
        text[:10],
        text + "junk",
    ][form]


TIMES = st.builds(
    _time_text,
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59),
        timezones=st.one_of(st.just(UTC), OFFSETS, st.none()),
    ),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    st.integers(0, 7),
)
TEXTS = st.one_of(
    st.none(),
    st.integers(0, 3).map(lambda n: "x" * (198 + n)),
    st.text(max_size=5),
    st.sampled_from(["", " ", "\t\n", "\u2003", "ok"]),
    st.integers(0, 3).map(lambda n: "x" * (198 + n)),
    st.integers(0, 3).map(lambda n: "y" * (9_998 + n)),
    st.integers(),
    st.booleans(),
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "entrypoint": st.one_of(
        TEXTS,
        st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
        st.integers(0, 1).map(lambda n: "z" * (100_000 + n)),
    ),
    "scheduled_at": st.one_of(TIMES, TEXTS),
    "priority": st.one_of(
        st.sampled_from(["low", "normal", "high", "critical", "urgent", "HIGH", " high"]),
        TEXTS,
    ),
    "name": TEXTS,
    "description": TEXTS,
    "job_type": TEXTS,
    "timeout_s": st.one_of(st.none(), st.floats(allow_nan=False), st.integers()),
    "submission_id": TEXTS,
    "env": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    "other": st.just(1),
}
SIMPLE = ("scheduled_at", "priority", "name", "description", "job_type")
JOBS = st.one_of(
    st.fixed_dictionaries(  # the fields plain_job reads, often valid
        {"entrypoint": st.one_of(st.just("true"), VALUES["entrypoint"])},
        optional={k: VALUES[k] for k in SIMPLE},
    ),
    st.fixed_dictionaries(
        {"entrypoint": VALUES["entrypoint"]},
        optional={k: v for k, v in VALUES.items() if k != "entrypoint"},
    ),
    st.dictionaries(st.sampled_from(sorted(VALUES)), st.integers(), max_size=3),
    st.just("not a job"),
    st.none(),
)


def _by_pydantic(raw: Any) -> PlainSpec | str | None:
    try:
        return JobCreate.model_validate(raw).to_plain()
    except ValidationError:
        return "refused"


@settings(max_examples=3000, deadline=None)
@given(JOBS)
@example({"entrypoint": "python3 -c pass", "scheduled_at": "2099-01-01T00:00:00Z"})
@example({"entrypoint": "x", "scheduled_at": "2099-01-01T02:00:00.5+02:00"})
@example({"entrypoint": "x", "scheduled_at": "9999-12-31T23:00:00-01:00"})
@example({"entrypoint": "x", "scheduled_at": "0001-01-01T00:00:00+01:00"})
@example({"entrypoint": "x", "scheduled_at": "2099-01-01T24:00:00Z"})
@example({"entrypoint": "x", "scheduled_at": "2099-02-29T00:00:00Z"})
@example({"entrypoint": "x", "scheduled_at": "2099-01-01T00:00:60Z"})
@example({"entrypoint": "x", "scheduled_at": "2099-01-01T00:00:00+24:00"})
@example({"entrypoint": "x", "scheduled_at": "2099-01-01T00:00:00-23:59"})
@example({"entrypoint": ["a", ""], "priority": "high", "name": None})
def test_the_job_pydantic_reads(raw: Any) -> None:
    fast = plain_job(raw)
    if fast is None:
        return
    slow = _by_pydantic(raw)
    assert isinstance(slow, PlainSpec)
    assert fast == slow
    for a, b in zip(fast, slow, strict=True):
        assert type(a) is type(b)
    if fast.scheduled_at is not None:
        assert slow.scheduled_at is not None
        assert fast.scheduled_at.tzinfo is UTC and slow.scheduled_at.tzinfo is UTC
        assert fast.scheduled_at.isoformat() == slow.scheduled_at.isoformat()


def test_the_common_jobs_are_read_without_pydantic() -> None:
    """The bodies a batch mostly gets go the fast way (else the test above says little)."""
    jobs = [
        {"entrypoint": "python3 -c pass", "scheduled_at": "2099-01-01T00:00:00Z"},
        {"entrypoint": ["echo", "hi"], "name": "n", "job_type": "t", "priority": "low"},
        {"entrypoint": "true", "description": "d", "scheduled_at": "2099-01-01T01:00:00.5-02:00"},
    ]
    for raw in jobs:
        assert plain_job(raw) == _by_pydantic(raw)
        assert plain_job(raw) is not None
    for raw in ({"entrypoint": "true", "submission_id": "k"}, {"entrypoint": "true", "env": {}}):
        assert plain_job(raw) is None
