"""Wire models of the native API (never domain objects or rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobyard.domain.jobs import Job, JobEvent, JobSpec
from jobyard.domain.priorities import Priority


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(Strict):
    entrypoint: str | list[str] = Field(
        description="A command string (run by /bin/sh -c) or an argv list (run without a shell)."
    )
    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    job_type: str | None = Field(None, max_length=100)
    priority: Priority = Priority.NORMAL
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(
        None, gt=0, le=30 * 24 * 3600, description="Limit on running time."
    )
    scheduled_at: datetime | None = Field(None, description="Start no earlier than this time.")
    submitted_by: str | None = Field(None, max_length=200)
    submission_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Idempotency key (or the Idempotency-Key header).",
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("must not be empty")
            if len(v) > 100_000:
                raise ValueError("must be at most 100000 characters")
        elif not v or not v[0]:
            raise ValueError("argv must have at least a program name")
        return v

    @field_validator("scheduled_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    def to_spec(self, idempotency_key: str | None) -> JobSpec:
        ep = self.entrypoint
        return JobSpec(
            entrypoint=ep if isinstance(ep, str) else None,
            argv=tuple(ep) if isinstance(ep, list) else None,
            name=self.name,
            description=self.description,
            job_type=self.job_type,
            priority=self.priority,
            parameters=self.parameters,
            metadata=self.metadata,
            env=self.env,
            timeout_s=self.timeout_s,
            scheduled_at=self.scheduled_at,
            submitted_by=self.submitted_by,
            idempotency_key=idempotency_key or self.submission_id,
        )


class CancelRequest(Strict):
    force: bool = False
    reason: str | None = Field(None, max_length=1000)


class UsageOut(BaseModel):
    cpu_percent: float | None
    rss_bytes: int | None
    peak_rss_bytes: int | None
    cpu_time_s: float | None


class JobOut(BaseModel):
    id: str
    name: str | None
    description: str | None
    job_type: str | None
    status: str
    priority: str
    entrypoint: str | None
    argv: list[str] | None
    parameters: dict[str, Any]
    metadata: dict[str, str]
    env: dict[str, str]
    timeout_s: float | None
    scheduled_at: datetime | None
    submitted_by: str | None
    submission_id: str | None
    attempt: int
    exit_code: int | None
    error_type: str | None
    message: str | None
    node_id: str | None
    pid: int | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    queue_time_ms: int | None
    elapsed_time_ms: int | None
    usage: UsageOut

    @classmethod
    def from_job(cls, job: Job, now: datetime) -> JobOut:
        s = job.spec
        return cls(
            id=job.id,
            name=s.name,
            description=s.description,
            job_type=s.job_type,
            status=job.state.value,
            priority=s.priority.value,
            entrypoint=s.entrypoint,
            argv=list(s.argv) if s.argv is not None else None,
            parameters=s.parameters,
            metadata=s.metadata,
            env=s.env,
            timeout_s=s.timeout_s,
            scheduled_at=s.scheduled_at,
            submitted_by=s.submitted_by,
            submission_id=s.idempotency_key,
            attempt=job.attempt,
            exit_code=job.exit_code,
            error_type=job.error_type,
            message=job.message,
            node_id=job.node_id,
            pid=job.pid,
            created_at=job.created_at,
            updated_at=job.updated_at,
            queued_at=job.queued_at,
            started_at=job.started_at,
            ended_at=job.ended_at,
            queue_time_ms=_ms(
                job.queued_at or job.created_at,
                job.started_at or (None if job.is_terminal else now),
            ),
            elapsed_time_ms=_ms(job.started_at, job.ended_at or now) if job.started_at else None,
            usage=UsageOut(**vars(job.usage)),
        )


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


class JobSummary(BaseModel):
    total: int
    by_status: dict[str, int]


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None
    summary: JobSummary


class EventOut(BaseModel):
    seq: int
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    message: str | None
    data: dict[str, Any]

    @classmethod
    def from_event(cls, e: JobEvent) -> EventOut:
        return cls(
            seq=e.seq,
            at=e.at,
            kind=e.kind,
            from_state=e.from_state,
            to_state=e.to_state,
            message=e.message,
            data=e.data,
        )


class EventList(BaseModel):
    items: list[EventOut]


class ErrorOut(BaseModel):
    code: str
    message: str
    details: dict[str, Any]
