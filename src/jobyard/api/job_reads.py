"""What ``GET /v1/jobs/{id}`` and ``GET /v1/jobs`` answer, for their routes
(``routes/jobs.py``) and for the fast path in front of FastAPI (``fast_reads.py``)
alike: the list's filter, the page, and one job with its warnings, retries, names and
queue insight. The caller has authenticated the principal; tenants, projects and roles
are the services' to enforce."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel

from jobyard import errors
from jobyard.api.params import split_values
from jobyard.api.schemas.jobs import JobList, JobOut, JobSummary, WarningOut
from jobyard.clock import ensure_utc
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import JobFilter
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.wiring import Services

E = TypeVar("E", JobState, Priority)

#: what the list accepts: ``limit`` up to this, ``cursor`` up to this many characters,
#: ``id_prefix`` of this pattern (job ids are lower-case UUIDs)
MAX_LIMIT = 500
MAX_CURSOR = 200
ID_PREFIX = r"[0-9a-f-]{1,36}"


def enum_set(kind: type[E], values: list[str] | None, field: str) -> frozenset[E]:
    """The members named by a repeated, comma-separated query parameter (any case)."""
    out = set()
    for v in split_values(values):
        try:
            out.add(kind(v.lower()))
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise errors.InvalidInput(
                f"{field}: {v!r} is not one of {allowed}", field=field
            ) from None
    return frozenset(out)


def job_filter(
    *,
    status: list[str] | None = None,
    priority: list[str] | None = None,
    job_type: str | None = None,
    submitted_by: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    id_prefix: str | None = None,
) -> JobFilter:
    """The list's filter from its query parameters (422 for a state or priority that is
    none)."""
    return JobFilter(
        id_prefix=id_prefix,
        states=enum_set(JobState, status, "status"),
        priorities=enum_set(Priority, priority, "priority"),
        job_type=job_type,
        submitted_by=submitted_by,
        created_from=ensure_utc(created_from),
        created_to=ensure_utc(created_to),
    )


def job_page(
    services: Services, principal: Principal, flt: JobFilter, limit: int, cursor: str | None
) -> JobList:
    """One page of the caller's jobs, newest first, with the counts by state."""
    page = services.jobs.list_jobs(principal, flt, limit=limit, cursor=cursor)
    now = services.clock.now()
    return JobList(
        items=[JobOut.from_job(j, now) for j in page.items],
        next_cursor=page.next_cursor,
        summary=JobSummary(total=sum(page.by_status.values()), by_status=page.by_status),
    )


def one_job(services: Services, principal: Principal, job_id: str) -> JobOut:
    """The caller's job with its warnings, retries, the names of what it uses and its
    queue insight (404 for another tenant's or project's job)."""
    job = services.jobs.get(principal, job_id)
    reason, insight = services.insight.describe(job)
    out = JobOut.from_job(job, services.clock.now(), reason)
    warnings = [WarningOut(**w) for w in services.tracking.warnings_of(job)]
    names = (
        services.jobs.setup_names(principal, job, services.registry, services.folders)
        if job.spec.model_version_id
        or job.spec.environment_id
        or job.spec.input_bindings
        or job.spec.input_folder_id
        or job.spec.output_folder_id
        else {}
    )
    out = out.model_copy(
        update={
            "warnings": warnings,
            "retries": services.jobs.retries(principal, job_id),
            **names,
        }
    )
    return out.with_insight(insight)


def to_json(model: BaseModel) -> bytes:
    """``model``'s JSON as FastAPI answers a ``response_model`` (by alias)."""
    return model.__pydantic_serializer__.to_json(model, by_alias=True)
