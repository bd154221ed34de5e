"""The statements of a list page (``JobStore.page``: the page and its counts by state)
for the common filters — project, states, priorities, job type, submitter, a cursor —
built once per shape, with bound parameters. On SQLite building a statement and its
cache key costs about what running it does; these are the statements ``JobStore``
builds for the same filter (the same conditions in the same order, the same SQL), so
the plans are too. A filter with a time range, model versions, a name or an id prefix
gets None: its caller builds the statement."""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa

from jobyard.domain.jobs import JobFilter
from jobyard.store.tables import job_counts, jobs

Statement = tuple[Any, dict[str, Any]]


def _plain(flt: JobFilter) -> bool:
    return (
        flt.created_from is None
        and flt.created_to is None
        and not flt.model_version_ids
        and flt.name_contains is None
        and not flt.id_prefix
        and flt.job_type != ""  # counted from the jobs, not job_counts: built by the caller
    )


def _params(tenant_id: str, flt: JobFilter, *, with_states: bool) -> dict[str, Any]:
    """The values of the conditions the filter has (as ``JobStore._where`` tests them)."""
    values: dict[str, Any] = {"tenant_id": tenant_id}
    if flt.project_id is not None:
        values["project_id"] = flt.project_id
    if with_states and flt.states:
        values["states"] = sorted(s.value for s in flt.states)
    if flt.priorities:
        values["priorities"] = sorted(p.value for p in flt.priorities)
    if flt.job_type is not None:
        values["job_type"] = flt.job_type
    if flt.submitted_by is not None:
        values["submitted_by"] = flt.submitted_by
    return values


def _conditions(table: sa.Table, names: frozenset[str]) -> list[Any]:
    """``JobStore._where``'s conditions (in its order) for the parameters named."""
    cond: list[Any] = [table.c.tenant_id == sa.bindparam("tenant_id")]
    if "project_id" in names:
        cond.append(table.c.project_id == sa.bindparam("project_id"))
    if "states" in names:
        cond.append(table.c.state.in_(sa.bindparam("states", expanding=True)))
    if "priorities" in names:
        cond.append(table.c.priority.in_(sa.bindparam("priorities", expanding=True)))
    if "job_type" in names:
        cond.append(table.c.job_type == sa.bindparam("job_type"))
    if "submitted_by" in names:
        cond.append(table.c.submitted_by == sa.bindparam("submitted_by"))
    return cond


@cache
def _list(names: frozenset[str]) -> Any:
    cond = _conditions(jobs, names - {"before", "limit"})
    if "before" in names:
        cond.append(jobs.c.seq < sa.bindparam("before"))
    limit = sa.bindparam("limit", type_=sa.Integer)
    return sa.select(jobs).where(*cond).order_by(jobs.c.seq.desc()).limit(limit)


@cache
def _count(names: frozenset[str]) -> Any:
    if "submitted_by" in names:  # counted from the jobs
        cond = _conditions(jobs, names)
        return sa.select(jobs.c.state, sa.func.count()).where(*cond).group_by(jobs.c.state)
    cond = _conditions(job_counts, names)
    total = sa.func.sum(job_counts.c.n)
    return sa.select(job_counts.c.state, total).where(*cond).group_by(job_counts.c.state)


def list_statement(
    tenant_id: str, flt: JobFilter, limit: int, before: int | None
) -> Statement | None:
    """The page's statement (``limit + 1`` rows, newest first, ``seq < before``) and
    its parameters, or None for a filter that is not one of the common ones."""
    if not _plain(flt):
        return None
    params = _params(tenant_id, flt, with_states=True)
    if before is not None:
        params["before"] = before
    params["limit"] = limit + 1
    return _list(frozenset(params)), params


def count_statement(tenant_id: str, flt: JobFilter) -> Statement | None:
    """The counts by state (the filter's states ignored) and their parameters, or None
    for a filter that is not one of the common ones."""
    if not _plain(flt):
        return None
    params = _params(tenant_id, flt, with_states=False)
    return _count(frozenset(params)), params
