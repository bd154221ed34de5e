"""Wire models of a job's results (``/v1/jobs/{id}/results``)."""

from __future__ import annotations

from pydantic import BaseModel

from jobyard.api.params import ResultFormat

__all__ = ["ArtifactOut", "ExecutionMetrics", "ResultFormat", "ResultSummary", "ResultsOut"]


class ArtifactOut(BaseModel):
    path: str
    type: str
    format: str
    size: int
    sha256: str
    record_count: int | None
    role: str | None
    download_url: str


class ExecutionMetrics(BaseModel):
    duration_ms: int | None
    cpu_time_s: float | None
    peak_memory_bytes: int | None
    cpu_percent: float | None


class ResultSummary(BaseModel):
    outputs_generated: int
    records_processed: int | None
    total_bytes: int


class ResultsOut(BaseModel):
    job_id: str
    status: str
    success: bool
    partial: bool
    completed_at: str | None
    primary_output: ArtifactOut | None
    artifacts: list[ArtifactOut] | None
    summary: ResultSummary
    execution_metrics: ExecutionMetrics
