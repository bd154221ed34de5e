"""``/v1/jobs``: submit, read, list, cancel, logs and timeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from jobyard import errors
from jobyard.api.bounds import AttemptNo, ByteOffset, Seq
from jobyard.api.deps import PrincipalDep, ReporterDep, ServicesDep
from jobyard.api.errors import ERRORS, validation_problems
from jobyard.api.job_reads import (
    ID_PREFIX,
    MAX_CURSOR,
    MAX_LIMIT,
    job_filter,
    job_page,
    one_job,
    to_json,
)
from jobyard.api.schemas.jobs import (
    AttemptOut,
    CancelRequest,
    EventList,
    EventOut,
    JobBatchIn,
    JobBatchOut,
    JobCreate,
    JobList,
    JobOut,
    ReportIn,
    RetryRequest,
    batch_json,
    plain_job,
)
from jobyard.domain.jobs import PlainSpec
from jobyard.service.submission import JobRequest

#: a followed log goes out in pieces this big: a slow reader holds one piece, and pieces
#: this small go back to the allocator when sent (8 MiB ones stayed in the process)
FOLLOW_CHUNK_BYTES = 64 * 1024
FOLLOW_POLL_S = 0.05

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)


def _json(model: JobOut | JobList, status_code: int = status.HTTP_200_OK) -> Response:
    """``model`` as FastAPI would answer it (its ``response_model``, by alias), without
    FastAPI's validation of the returned model (in the thread pool for a sync route:
    one thread hop less per read, ≈ 0.2 ms of CPU)."""
    return Response(to_json(model), status_code=status_code, media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    response_model=JobOut,
    responses={200: {"model": JobOut, "description": "The job an idempotency key names"}},
)
async def submit_job(
    body: JobCreate,
    services: ServicesDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    insight: Annotated[
        bool,
        Query(description="Add the queue insight (pending reason, position, estimates)."),
    ] = False,
) -> Response:
    """201 with the new job once it is committed (200 with the job an idempotency key
    already names). A plain command job is accepted without leaving the event loop."""
    request = body.to_request(idempotency_key)
    accepted = await services.jobs.submit_plain(principal, request)
    if accepted is None:
        accepted = await run_in_threadpool(services.jobs.submit_request, principal, request)
    job, created = accepted
    out = JobOut.from_job(job, services.clock.now())
    if insight:
        reason, found = await run_in_threadpool(services.insight.describe, job)
        out = JobOut.from_job(job, services.clock.now(), reason).with_insight(found)
    return _json(out, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.post(
    "/batch",
    summary="Submit up to 1,000 jobs in one transaction",
    description="Each job is validated and accepted on its own: the answer lists, in the "
    "request's order, each job's id and state or its error. The accepted jobs are "
    "committed together, before the answer.",
    response_model=JobBatchOut,
)
async def submit_batch(
    body: JobBatchIn, services: ServicesDep, principal: PrincipalDep
) -> Response:
    requests: list[JobRequest | PlainSpec | errors.JobyardError] = []
    for i, raw in enumerate(body.jobs):
        simplest = plain_job(raw)  # the commonest jobs, without pydantic
        if simplest is not None:
            requests.append(simplest)
            continue
        try:
            job = JobCreate.model_validate(raw)
            plain = job.to_plain()
            requests.append(plain if plain is not None else job.to_request(None))
        except ValidationError as e:
            message, problems = validation_problems(e.errors(), ("jobs", i))
            requests.append(errors.ValidationFailed(message, errors=problems))
    results = await run_in_threadpool(services.jobs.submit_batch, principal, requests)
    return Response(batch_json(results), media_type="application/json")


@router.get("", summary="List jobs, newest first", response_model=JobList)
def list_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    status_: Annotated[
        list[str] | None, Query(alias="status", description="One or more states")
    ] = None,
    priority: Annotated[list[str] | None, Query()] = None,
    job_type: str | None = None,
    submitted_by: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
    id_prefix: Annotated[
        str | None,
        Query(
            pattern=f"^{ID_PREFIX}$",
            description="Only jobs whose id starts with this (lower-case hex and '-')",
        ),
    ] = None,
) -> Response:
    flt = job_filter(
        status=status_,
        priority=priority,
        job_type=job_type,
        submitted_by=submitted_by,
        created_from=created_from,
        created_to=created_to,
        id_prefix=id_prefix,
    )
    return _json(job_page(services, principal, flt, limit, cursor))


@router.get("/{job_id}", summary="Get a job", response_model=JobOut)
def get_job(job_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return _json(one_job(services, principal, job_id))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, summary="Cancel a job")
def cancel_job(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> JobOut:
    req = body or CancelRequest()
    job = services.jobs.cancel(principal, job_id, force=req.force, reason=req.reason)
    return JobOut.from_job(job, services.clock.now())


@router.post(
    "/{job_id}/report",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Report progress, metrics, warnings or items (the job's own token, or an API key)",
)
def report(
    job_id: str, body: ReportIn, services: ServicesDep, caller: ReporterDep
) -> dict[str, int]:
    raw = body.model_dump()
    objects = (
        raw["reports"] if set(raw) == {"reports"} and isinstance(raw["reports"], list) else [raw]
    )
    return {"accepted": services.tracking.report(caller, job_id, objects)}


@router.post(
    "/{job_id}/retry", status_code=status.HTTP_201_CREATED, summary="Run an ended job again"
)
def retry_job(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    body: Annotated[RetryRequest | None, Body()] = None,
) -> JobOut:
    req = body or RetryRequest()
    job = services.jobs.retry(
        principal,
        job_id,
        reason=req.reason,
        parameters=req.parameters,
        priority=req.priority,
        timeout_s=req.timeout_s,
        immediate=req.immediate,
    )
    reason, insight = services.insight.describe(job)
    return JobOut.from_job(job, services.clock.now(), reason).with_insight(insight)


@router.get("/{job_id}/attempts", summary="Every attempt of the job, with its exit code and log")
def job_attempts(
    job_id: str, request: Request, services: ServicesDep, principal: PrincipalDep
) -> dict[str, list[AttemptOut]]:
    base = str(request.base_url)
    items = [
        AttemptOut(
            attempt=a["attempt"],
            state=a["state"],
            node_id=a["node_id"],
            started_at=a["started_at"],
            ended_at=a["ended_at"],
            exit_code=a["exit_code"],
            error_type=a["error_type"],
            message=a["message"],
            log_url=f"{base}v1/jobs/{job_id}/logs?attempt={a['attempt']}",
        )
        for a in services.tracking.attempts(principal, job_id)
    ]
    return {"items": items}


@router.get("/{job_id}/metrics", summary="Resource samples of the job (CPU, memory, disk, I/O)")
def job_metrics(job_id: str, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    samples = services.tracking.samples(principal, job_id)
    job = services.jobs.get(principal, job_id)
    keys = ("at", "cpu_percent", "rss_bytes", "disk_bytes", "io_read_ops", "io_write_ops")
    return {
        "totals": {
            "cpu_time_s": job.usage.cpu_time_s,
            "peak_rss_bytes": job.usage.peak_rss_bytes,
            "io_read_ops": job.usage.io_read_ops,
            "io_write_ops": job.usage.io_write_ops,
            "disk_bytes": job.usage.disk_bytes,
        },
        "samples": [{k: s[k] for k in keys} for s in samples],
    }


@router.get("/{job_id}/events", summary="The job's timeline")
def job_events(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    after: Annotated[Seq | None, Query(description="Only events after this seq")] = None,
) -> EventList:
    return EventList(
        items=[EventOut.from_event(e) for e in services.jobs.events(principal, job_id, after)]
    )


@router.get(
    "/{job_id}/logs",
    summary="The job's output (stdout and stderr)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Log text"}},
)
def job_logs(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    offset: Annotated[ByteOffset, Query()] = 0,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    follow: bool = False,
    attempt: Annotated[AttemptNo | None, Query()] = None,
) -> Response:
    chunk = services.logs.read_log(principal, job_id, offset=offset, tail=tail, attempt=attempt)
    headers = {"X-Log-Offset": str(chunk.offset), "X-Log-Next-Offset": str(chunk.next_offset)}
    if not follow:
        return Response(chunk.data, media_type="text/plain; charset=utf-8", headers=headers)

    async def stream() -> AsyncIterator[bytes]:
        if chunk.data:
            yield chunk.data
        pos, pinned = chunk.next_offset, attempt
        while True:
            poll = await run_in_threadpool(
                services.logs.poll_log,
                principal,
                job_id,
                offset=pos,
                attempt=pinned,
                limit=FOLLOW_CHUNK_BYTES,
            )
            pinned = poll.attempt
            if poll.data:
                pos = poll.next_offset
                yield poll.data
            elif poll.done:
                return
            else:
                await asyncio.sleep(FOLLOW_POLL_S)

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8", headers=headers)
