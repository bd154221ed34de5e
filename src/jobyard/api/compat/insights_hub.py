"""Insights Hub (MindSphere) Job Manager v3 under ``/api/jobmanager/v3``: run a model
version in an environment configuration with input and output folders. Only translation
happens here; see ``docs/reference/compat-insights-hub.md``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, status

from jobyard import errors
from jobyard.api.compat.insights_hub_mapping import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SPEC_FIELDS,
    JobIn,
    JobItem,
    JobOut,
    JobPage,
    spring_page,
    status_of,
)
from jobyard.api.compat.wire import spec_error
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.domain.states import JobState
from jobyard.wiring import Services

#: the reason code of ``InsightService.pending_reason`` for a busy environment configuration
ENVIRONMENT_BUSY = "concurrency_limit:"
#: the states of a job that waits to start
WAITING = frozenset({JobState.SCHEDULED, JobState.QUEUED})


def accept_xsrf(
    x_xsrf_token: Annotated[
        str | None,
        Header(
            alias="X-XSRF-TOKEN",
            description="Accepted and ignored: API keys are not cookies, so there is no "
            "request to forge.",
        ),
    ] = None,
) -> None:
    """Let the spec's clients send their XSRF header."""


router = APIRouter(
    prefix="/api/jobmanager/v3/jobs",
    tags=["compat: Insights Hub Job Manager v3"],
    responses=ERRORS,
    dependencies=[Depends(accept_xsrf)],
)


def _view(runtime: Services, principal: Principal, job: Job) -> tuple[str, str]:
    """The spec's status and message of ``job`` as read. A waiting job's message says
    why it waits (the native pending reason); a queued job is PENDING while its
    environment configuration runs as many jobs as it may. A job that has not changed
    state since it was submitted has the message of its submission."""
    reason = runtime.insight.pending_reason(job) if job.state in WAITING else None
    busy = reason is not None and reason.startswith(ENVIRONMENT_BUSY)
    # a job that started since it was read counts itself among the environment's jobs
    if busy and runtime.jobs.get(principal, job.id).state is not JobState.QUEUED:
        busy, reason = False, None
    message = reason or job.message
    if message is None:
        events = runtime.jobs.events(principal, job.id)
        submitted = next((e for e in events if e.kind == "state"), None)
        message = submitted.message if submitted else None
    return status_of(job, environment_busy=busy), message or ""


@router.post("", status_code=status.HTTP_201_CREATED, summary="Start a job")
def start_job(body: JobIn, runtime: ServicesDep, principal: PrincipalDep) -> JobOut:
    try:
        job, _ = runtime.jobs.submit_request(principal, body.to_request())
    except errors.InvalidInput as e:
        raise spec_error(e, SPEC_FIELDS) from e
    return JobOut.of(job, *_view(runtime, principal, job))


@router.get("", summary="List jobs, newest first, in pages (pageNumber from 0)")
def list_jobs(
    runtime: ServicesDep,
    principal: PrincipalDep,
    page_number: Annotated[
        str | None,
        Query(
            alias="pageNumber",
            description="From 0 (default 0); read as Spring reads it: negative or not a"
            " number → 0.",
        ),
    ] = None,
    page_size: Annotated[
        str | None,
        Query(
            alias="pageSize",
            description=f"Default {DEFAULT_PAGE_SIZE}; read as Spring reads it: below 1 or"
            f" not a number → {DEFAULT_PAGE_SIZE}, above {MAX_PAGE_SIZE} → {MAX_PAGE_SIZE}.",
        ),
    ] = None,
) -> JobPage:
    number, size = spring_page(page_number, page_size)
    found = runtime.jobs.page_at(principal, JobFilter(), offset=number * size, size=size)
    content = [JobItem.of(j, *_view(runtime, principal, j)) for j in found.items]
    return JobPage.of(content, total=found.total, number=number, size=size)


@router.get("/{job_id}", summary="Get a job")
def get_job(job_id: str, runtime: ServicesDep, principal: PrincipalDep) -> JobOut:
    job = runtime.jobs.get(principal, job_id)
    return JobOut.of(job, *_view(runtime, principal, job))


@router.post("/{job_id}/stop", summary="Stop a job; outputs written so far are kept")
def stop_job(job_id: str, runtime: ServicesDep, principal: PrincipalDep) -> JobOut:
    job = runtime.jobs.cancel(principal, job_id)
    return JobOut.of(job, *_view(runtime, principal, job))
