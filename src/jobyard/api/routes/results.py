"""``/v1/jobs/{id}/results``: what a job produced, and its files."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.params import ResultFormat
from jobyard.api.schemas.results import (
    ArtifactOut,
    ExecutionMetrics,
    ResultsOut,
    ResultSummary,
)
from jobyard.domain.results import Artifact, OutputType

router = APIRouter(prefix="/v1/jobs", tags=["results"], responses=ERRORS)


def _artifact(request: Request, job_id: str, a: Artifact) -> ArtifactOut:
    url = str(request.base_url) + f"v1/jobs/{job_id}/results/files/{quote(a.path)}"
    return ArtifactOut(
        path=a.path,
        type=a.type.value,
        format=a.format,
        size=a.size,
        sha256=a.sha256,
        record_count=a.record_count,
        role=a.role,
        download_url=url,
    )


@router.get(
    "/{job_id}/results",
    summary="A job's results",
    response_model=ResultsOut,
    responses={200: {"content": {"application/zip": {}}}},
)
def job_results(
    job_id: str,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    format: ResultFormat = ResultFormat.SUMMARY,
    output_type: Annotated[OutputType | None, Query()] = None,
) -> ResultsOut | StreamingResponse:
    if format is ResultFormat.DOWNLOAD:
        stream = services.results.zip_stream(principal, job_id)
        first = next(stream, b"")  # errors (404, 409) surface before the answer starts

        def body() -> object:
            yield first
            yield from stream

        return StreamingResponse(
            body(),  # type: ignore[arg-type]
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="results-{job_id}.zip"'},
        )
    res = services.results.get(principal, job_id, output_type)
    job = res.job
    counts = [a.record_count for a in res.artifacts if a.record_count is not None]
    duration = (
        int((job.ended_at - job.started_at).total_seconds() * 1000)
        if job.ended_at and job.started_at
        else None
    )
    return ResultsOut(
        job_id=job.id,
        status=job.state.value,
        success=job.state.value == "succeeded",
        partial=res.partial,
        completed_at=job.ended_at.isoformat().replace("+00:00", "Z") if job.ended_at else None,
        primary_output=_artifact(request, job.id, res.primary) if res.primary else None,
        artifacts=[_artifact(request, job.id, a) for a in res.artifacts]
        if format is ResultFormat.DETAILED
        else None,
        summary=ResultSummary(
            outputs_generated=len(res.artifacts),
            records_processed=sum(counts) if counts else None,
            total_bytes=sum(a.size for a in res.artifacts),
        ),
        execution_metrics=ExecutionMetrics(
            duration_ms=duration,
            cpu_time_s=job.usage.cpu_time_s,
            peak_memory_bytes=job.usage.peak_rss_bytes,
            cpu_percent=job.usage.cpu_percent,
        ),
    )


@router.get("/{job_id}/results/files/{path:path}", summary="Download one result file")
def result_file(
    job_id: str, path: str, services: ServicesDep, principal: PrincipalDep
) -> StreamingResponse:
    artifact, chunks = services.results.open(principal, job_id, path)
    name = quote(artifact.path.rsplit("/", 1)[-1])
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            "Content-Length": str(artifact.size),
            "X-Content-SHA256": artifact.sha256,
        },
    )
