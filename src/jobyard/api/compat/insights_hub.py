"""Insights Hub (MindSphere) Job Manager v3 under ``/api/jobmanager/v3``: run a model
version in an environment configuration with input and output folders. Only translation
happens here; see ``docs/compat-insights-hub.md``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, status

from jobyard import errors
from jobyard.api.compat.insights_hub_mapping import (
    JobIn,
    JobItem,
    JobOut,
    JobPage,
    spec_error,
    status_of,
)
from jobyard.api.deps import PrincipalDep, RuntimeDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.domain.states import JobState
from jobyard.wiring import Runtime

#: the reason code of ``InsightService.pending_reason`` for a busy environment configuration
ENVIRONMENT_BUSY = "concurrency_limit:"
MAX_PAGE_SIZE = 2000


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


def _status(runtime: Runtime, principal: Principal, job: Job) -> str:
    """The spec's status of ``job`` as read; a queued job is PENDING while its environment
    configuration runs as many jobs as it may."""
    busy = False
    if job.state is JobState.QUEUED and job.spec.environment_id is not None:
        reason = runtime.insight.pending_reason(job) or ""
        # a job that started since it was read counts itself among the environment's jobs
        busy = reason.startswith(ENVIRONMENT_BUSY) and (
            runtime.jobs.get(principal, job.id).state is JobState.QUEUED
        )
    return status_of(job, environment_busy=busy)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Start a job")
def start_job(body: JobIn, runtime: RuntimeDep, principal: PrincipalDep) -> JobOut:
    try:
        job, _ = runtime.jobs.submit_request(principal, body.to_request())
    except errors.InvalidInput as e:
        raise spec_error(e) from e
    return JobOut.of(job, _status(runtime, principal, job))


@router.get("", summary="List jobs, newest first, in pages (pageNumber from 0)")
def list_jobs(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    page_number: Annotated[int, Query(alias="pageNumber", ge=0, le=1_000_000)] = 0,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> JobPage:
    found = runtime.jobs.page_at(
        principal, JobFilter(), offset=page_number * page_size, size=page_size
    )
    content = [JobItem.of(j, _status(runtime, principal, j)) for j in found.items]
    return JobPage.of(content, total=found.total, number=page_number, size=page_size)


@router.get("/{job_id}", summary="Get a job")
def get_job(job_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> JobOut:
    job = runtime.jobs.get(principal, job_id)
    return JobOut.of(job, _status(runtime, principal, job))


@router.post("/{job_id}/stop", summary="Stop a job; outputs written so far are kept")
def stop_job(job_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> JobOut:
    job = runtime.jobs.cancel(principal, job_id)
    return JobOut.of(job, _status(runtime, principal, job))
