"""Counts by state of a time range or a submitter from ``job_hour_counts`` (kept by
triggers, migration 0014): the whole hours of a range summed, the jobs of its at most
two edge hours counted; and the seqs that bound a range's jobs, for its page.

Exact: a job is in one hour's row from its insert on, and ``created_at`` splits the
jobs between the whole hours and the edges, so each is counted once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa

from jobyard.domain.jobs import JobFilter
from jobyard.store.tables import HOUR_STATES, job_hour_counts, jobs

_HOUR = timedelta(hours=1)
_TICK = timedelta(microseconds=1)  #: the resolution of stored timestamps (both dialects)
_NO_FILTER = JobFilter()
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, tzinfo=UTC)


def _floor(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _ceil(at: datetime) -> datetime | None:
    """The first hour at or after ``at`` (None past the last representable one)."""
    floor = _floor(at)
    if floor == at:
        return at
    try:
        return floor + _HOUR
    except OverflowError:
        return None


def applies(flt: JobFilter) -> bool:
    """Whether the hour counts answer this filter's counts: a time range and/or a
    submitter, with a project or not, nothing else but states (which counts ignore)."""
    if flt.submitted_by is None and flt.created_from is None and flt.created_to is None:
        return False
    if flt.submitted_by == "":  # its rows hold the jobs without a submitter too
        return False
    rest = replace(
        flt,
        states=frozenset(),
        project_id=None,
        submitted_by=None,
        created_from=None,
        created_to=None,
    )
    return rest == _NO_FILTER


def _keys(table: sa.Table, names: frozenset[str]) -> list[Any]:
    cond: list[Any] = [table.c.tenant_id == sa.bindparam("tenant_id")]
    if "project_id" in names:
        cond.append(table.c.project_id == sa.bindparam("project_id"))
    if "submitted_by" in names:
        cond.append(table.c.submitted_by == sa.bindparam("submitted_by"))
    return cond


@cache
def _sums(names: frozenset[str]) -> Any:
    """Each state's sum over the rows of the key, hours in ``[first, end)``."""
    cond = _keys(job_hour_counts, names)
    if "first" in names:
        cond.append(job_hour_counts.c.hour >= sa.bindparam("first"))
    if "end" in names:
        cond.append(job_hour_counts.c.hour < sa.bindparam("end"))
    return sa.select(*(sa.func.sum(job_hour_counts.c[s]) for s in HOUR_STATES)).where(*cond)


@cache
def _edge(names: frozenset[str]) -> Any:
    """The matching jobs created in ``[low, high]``, by state (the created_at index)."""
    cond = _keys(jobs, names)
    cond.append(jobs.c.created_at >= sa.bindparam("low"))
    cond.append(jobs.c.created_at <= sa.bindparam("high"))
    return sa.select(jobs.c.state, sa.func.count()).where(*cond).group_by(jobs.c.state)


@cache
def _bounds(names: frozenset[str]) -> Any:
    """The lowest seq counted in the key's hours ``[first, end]`` and the highest in
    ``[first, end)`` (the hour ``end`` is the caller's to bound by its jobs)."""
    c = job_hour_counts.c
    cond = _keys(job_hour_counts, names)
    cond.append(c.hour >= sa.bindparam("first"))
    highest = sa.func.max(c.max_seq)
    if "end" in names:
        cond.append(c.hour <= sa.bindparam("end"))
        highest = sa.func.max(sa.case((c.hour < sa.bindparam("end"), c.max_seq)))
    return sa.select(sa.func.min(c.min_seq), highest).where(*cond)


#: the tenant's highest seq created in ``[low, high]``, from the created_at index (``+ 0``:
#: not by walking the primary key down from the newest job until one matches)
_EDGE_MAX = sa.select(sa.func.max(jobs.c.seq + 0)).where(
    jobs.c.tenant_id == sa.bindparam("tenant_id"),
    jobs.c.created_at >= sa.bindparam("low"),
    jobs.c.created_at <= sa.bindparam("high"),
)


def _key_params(tenant_id: str, flt: JobFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"tenant_id": tenant_id}
    if flt.project_id is not None:
        params["project_id"] = flt.project_id
    if flt.submitted_by is not None:
        params["submitted_by"] = flt.submitted_by
    return params


def count_by_state(conn: sa.Connection, tenant_id: str, flt: JobFilter) -> dict[str, int] | None:
    """Counts by state of the jobs matching ``flt`` (its states ignored), or None when
    the hour counts do not answer it (see :func:`applies`) or the range holds no whole
    hour (its jobs are few: the caller counts them)."""
    if not applies(flt):
        return None
    low, high = flt.created_from, flt.created_to
    first = _ceil(low) if low is not None else None
    end = _floor(high) if high is not None else None
    if low is not None and first is None:
        return None
    if first is not None and end is not None and first >= end:
        return None
    key = _key_params(tenant_id, flt)
    sums = {**key}
    if first is not None:
        sums["first"] = first
    if end is not None:
        sums["end"] = end
    row = conn.execute(_sums(frozenset(sums)), sums).one()
    counts = {s: int(n) for s, n in zip(HOUR_STATES, row, strict=True) if n}
    edges = []
    if low is not None and first is not None and first != low:
        edges.append((low, first - _TICK))
    if high is not None and end is not None:
        edges.append((end, high))
    for a, b in edges:
        params = {**key, "low": a, "high": b}
        for state, n in conn.execute(_edge(frozenset(params)), params):
            counts[state] = counts.get(state, 0) + int(n)
    return {s: n for s, n in counts.items() if n}


def seq_bounds(conn: sa.Connection, tenant_id: str, flt: JobFilter) -> tuple[int, int]:
    """The lowest and highest seq a job matching ``flt``'s time range (and project and
    submitter) can have, ``(1, 0)`` for none: the rows of the hours the range touches,
    the last hour's (partial) by its jobs' own seqs, a tighter upper bound."""
    low, high = flt.created_from, flt.created_to
    params = _key_params(tenant_id, flt)
    params["first"] = _floor(low) if low is not None else _EARLIEST
    if high is not None:
        params["end"] = _floor(high)
    lo, hi = conn.execute(_bounds(frozenset(params)), params).one()
    if high is not None:
        edge = {"tenant_id": tenant_id, "low": max(params["end"], low or _EARLIEST), "high": high}
        last = conn.execute(_EDGE_MAX, edge).scalar()
        if last is not None:
            hi = last if hi is None else max(hi, last)
    return (1, 0) if lo is None or hi is None else (int(lo), int(hi))
