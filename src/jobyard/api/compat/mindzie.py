"""The mindzie Job Execution API (spec 001): ``/api/{tenantId}/{projectId}/execution/…``
and ``/api/{tenantId}/execution/system/status``. Only translation happens here (the
results and system status objects; the rest in ``mindzie_mapping``); the tables are in
``docs/reference/compat-mindzie.md``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from jobyard import errors
from jobyard.api.compat.mindzie_mapping import (
    SPEC_FIELDS,
    STATUS,
    CancelIn,
    JobSubmission,
    RetryIn,
    decimal,
    iso,
    job_object,
    list_item,
    parse_priority,
    size,
    spoken,
    states_for,
    submitted,
    summary,
)
from jobyard.api.compat.wire import spec_error
from jobyard.api.deps import PrincipalDep, ServicesDep, get_status_service
from jobyard.api.errors import ERRORS
from jobyard.api.params import ResultFormat, split_values
from jobyard.clock import ensure_utc
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.domain.results import Artifact, OutputType
from jobyard.domain.states import JobState
from jobyard.service.results import Results
from jobyard.service.status import SystemStatus, SystemStatusService
from jobyard.wiring import Services

MAX_PAGE_SIZE = 100
MS = 0.001
Json = dict[str, Any]
#: the ``outputType`` filter (the spec's plural names, or jobyard's own) and output types
OUTPUT_TYPES = {t.value: t for t in OutputType} | {f"{t.value}s": t for t in OutputType}
OUTPUT_NAMES = {t: t.value.capitalize() for t in OutputType} | {
    OutputType.DATA: "Dataset",
    OutputType.OTHER: "File",
}

router = APIRouter(
    prefix="/api/{tenantId}",
    tags=["compat: mindzie Job Execution API"],
    responses=ERRORS,
)


def tenant(tenantId: str, principal: PrincipalDep) -> Principal:
    """The caller, when ``tenantId`` is its key's tenant; any other tenant is a 404."""
    if tenantId != principal.tenant_id:
        raise errors.NotFound(f"tenant {tenantId} does not exist", kind="tenant")
    return principal


TenantDep = Annotated[Principal, Depends(tenant)]


@dataclass(frozen=True)
class Scope:
    """The caller in one of its projects (from the path)."""

    runtime: Services
    principal: Principal
    project_id: str

    def job(self, job_id: str) -> Job:
        """The caller's job in this project (404 otherwise)."""
        job = self.runtime.jobs.get(self.principal, job_id)
        if job.spec.project_id != self.project_id:
            raise errors.NotFound(f"job {job_id} does not exist", kind="job", id=job_id)
        return job

    def render(self, job: Job) -> Json:
        _, insight = self.runtime.insight.describe(job)
        return job_object(job, self.runtime.clock.now(), insight)


def project(projectId: str, principal: TenantDep, runtime: ServicesDep) -> Scope:
    """``projectId`` must name one of the caller's projects (404 otherwise)."""
    return Scope(runtime, principal, runtime.tenancy.check_project(principal, projectId))


ScopeDep = Annotated[Scope, Depends(project)]
JOB = "/{projectId}/execution/job/{jobId}"


@router.post("/{projectId}/execution/job", status_code=status.HTTP_201_CREATED)
def submit_job(
    body: JobSubmission,
    response: Response,
    scope: ScopeDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Json:
    """Submit a job (201; 200 with the existing job for a repeated `Idempotency-Key`)."""
    try:
        request = body.to_request(scope.project_id, idempotency_key)
        job, created = scope.runtime.jobs.submit_request(scope.principal, request)
    except errors.InvalidInput as e:
        raise spec_error(e, SPEC_FIELDS) from e
    if not created:
        response.status_code = status.HTTP_200_OK
    return submitted(job, scope.runtime.insight.describe(job)[1])


@router.get("/{projectId}/execution/jobs")
def list_jobs(
    scope: ScopeDep,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    jobType: str | None = None,
    priority: Annotated[list[str] | None, Query()] = None,
    submittedBy: str | None = None,
    dateFrom: datetime | None = None,
    dateTo: datetime | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> Json:
    """List jobs, newest first, in pages (`page` from 1), with counts by status."""
    flt = JobFilter(
        states=states_for(split_values(status_)),
        priorities=frozenset(parse_priority(p) for p in split_values(priority)),
        job_type=jobType,
        submitted_by=submittedBy,
        created_from=ensure_utc(dateFrom),
        created_to=ensure_utc(dateTo),
        project_id=scope.project_id,
    )
    found = scope.runtime.jobs.page_at(
        scope.principal, flt, offset=(page - 1) * pageSize, size=pageSize
    )
    now = scope.runtime.clock.now()
    return {
        "jobs": [list_item(j, now) for j in found.items],
        "summary": summary(found.by_status),
        "page": page,
        "pageSize": pageSize,
        "hasNextPage": page * pageSize < found.total,
    }


@router.get(JOB)
def get_job(jobId: str, scope: ScopeDep) -> Json:
    """A job with its progress, execution, metrics and queue estimates."""
    return scope.render(scope.job(jobId))


@router.delete(JOB)
def cancel_job(
    jobId: str, scope: ScopeDep, body: Annotated[CancelIn | None, Body()] = None
) -> Json:
    """Cancel a queued or running job: 200 with the job; 409 once it has ended."""
    req = body or CancelIn()
    scope.job(jobId)
    job = scope.runtime.jobs.cancel(
        scope.principal, jobId, force=req.forceTermination, reason=req.reason
    )
    return scope.render(job)


def _results(
    res: Results, files_url: str, warnings: list[Json], *, detailed: bool, files: bool
) -> Json:
    """The results object; ``files_url`` + a file's path is its download URL."""
    job, found, u, t = res.job, res.artifacts, res.job.usage, res.job.tracking
    primary = res.primary if res.primary in found else next(iter(found), None)
    counted = sum(a.record_count or 0 for a in found)
    ops = [n for n in (u.io_read_ops, u.io_write_ops) if n is not None]
    took = job.ended_at - job.started_at if job.ended_at and job.started_at else None

    def output(a: Artifact) -> Json:
        return {
            "type": OUTPUT_NAMES[a.type],
            "title": a.path,
            "format": a.format,
            "size": size(a.size),
            "recordCount": a.record_count,
            "downloadUrl": files_url + quote(a.path),
        }

    failed = job.state in (JobState.FAILED, JobState.TIMED_OUT)
    errs = [{"type": job.error_type, "message": job.message}] if failed else []
    return {
        "jobId": job.id,
        "status": STATUS[job.state],
        "completionTime": iso(job.ended_at),
        "totalDuration": None if took is None else spoken(took.total_seconds()),
        "success": job.state is JobState.SUCCEEDED,
        "summary": {
            "recordsProcessed": counted if t.records_processed is None else t.records_processed,
            "outputsGenerated": len(found),
            "dataQualityScore": None,
            "processingEfficiency": None,
        },
        "results": {
            "primaryOutput": output(primary) if primary else None,
            "additionalOutputs": [output(a) for a in found if a != primary] if detailed else None,
        }
        if files
        else None,
        "executionMetrics": {
            "totalCpuTime": decimal(u.cpu_time_s),
            "peakMemoryUsage": size(u.peak_rss_bytes),
            "diskIoOperations": sum(ops) if ops else None,
            "networkDataTransfer": None,
        },
        "qualityMetrics": {
            "dataValidation": {"totalRecords": t.total_records}
            | dict.fromkeys(("validRecords", "duplicatesRemoved", "invalidRecords")),
            "processingErrors": errs,
            "warnings": warnings,
        }
        if detailed
        else None,
    }


@router.get(
    JOB + "/results", response_model=None, responses={200: {"content": {"application/zip": {}}}}
)
def job_results(
    jobId: str,
    request: Request,
    scope: ScopeDep,
    format: ResultFormat = ResultFormat.SUMMARY,
    includeArtifacts: bool = True,
    outputType: str | None = None,
) -> Json | StreamingResponse:
    """The job's outputs with download URLs (`format=download`: all of them as a zip)."""
    scope.job(jobId)
    runtime, principal = scope.runtime, scope.principal
    if format is ResultFormat.DOWNLOAD:
        stream = runtime.results.zip_stream(principal, jobId)
        first = next(stream, b"")  # errors (409 while it runs) come before the answer starts
        return StreamingResponse(
            chain((first,), stream),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="results-{jobId}.zip"'},
        )
    kind = OUTPUT_TYPES.get((outputType or "").strip().lower())
    if outputType is not None and kind is None:
        allowed = "reports, data, models, visualizations"
        raise errors.InvalidInput(
            f"outputType: {outputType!r} is not one of {allowed}", field="outputType"
        )
    res = runtime.results.get(principal, jobId, kind)
    detailed = format is ResultFormat.DETAILED
    warnings = runtime.tracking.warnings(principal, jobId) if detailed else []
    files = f"{request.base_url}v1/jobs/{quote(jobId)}/results/files/"
    return _results(res, files, warnings, detailed=detailed, files=includeArtifacts)


@router.post(JOB + "/retry")
def retry_job(jobId: str, scope: ScopeDep, body: Annotated[RetryIn | None, Body()] = None) -> Json:
    """Run an ended job again as a new job, with merged parameters (200: the new job)."""
    req = body or RetryIn()
    parameters, timeout_s = req.changes()
    scope.job(jobId)
    job = scope.runtime.jobs.retry(
        scope.principal,
        jobId,
        reason=req.retryReason,
        parameters=parameters,
        priority=parse_priority(req.priority) if req.priority else None,
        timeout_s=timeout_s,
        immediate=req.immediateExecution,
    )
    return scope.render(job)


def system(s: SystemStatus) -> Json:
    """The spec's system status from jobyard's (job figures are the caller's tenant's)."""
    q, p, r = s.queue, s.performance, s.resources
    return {
        "systemStatus": s.status.capitalize(),
        "timestamp": iso(s.timestamp),
        "executionNodes": [
            {
                "nodeId": n.id,
                "status": n.status.capitalize(),
                "cpuUsage": None if n.cpu_percent is None else round(n.cpu_percent),
                "memoryUsage": None if n.memory_percent is None else round(n.memory_percent),
                "activeJobs": n.active_jobs,
                "jobCapacity": n.capacity,
            }
            for n in s.nodes
        ],
        "queueStatistics": {
            "totalQueuedJobs": q.total_queued,
            **{f"{k}PriorityJobs": q.by_priority.get(k, 0) for k in ("high", "normal", "low")},
            "criticalPriorityJobs": q.by_priority.get("critical", 0),
            "averageWaitTime": decimal(q.average_wait_ms, MS),
            "estimatedProcessingTime": decimal(q.estimated_drain_ms, MS),
        },
        "performanceMetrics": {
            "jobsCompletedToday": p.jobs_completed,
            "averageJobDuration": decimal(p.average_duration_ms, MS),
            "successRate": p.success_rate_percent,
            "throughputPerHour": p.throughput_per_hour,
        },
        "resourceUtilization": {
            "totalCpuCapacity": r.total_slots,
            "usedCpuCapacity": r.used_slots,
            "totalMemoryCapacity": size(r.memory_total_bytes),
            "usedMemoryCapacity": size(r.memory_used_bytes),
            "diskSpaceAvailable": size(r.disk_free_bytes),
        },
    }


@router.get("/execution/system/status")
def system_status(
    principal: TenantDep,
    service: Annotated[SystemStatusService, Depends(get_status_service)],
) -> Json:
    """Health, nodes, queue, performance and resources."""
    return system(service.status(principal))
