"""Wire models of the native API (never domain objects or rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobyard.domain.jobs import Job, JobEvent, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.service.submission import JobRequest, RoleBinding


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoleBindingIn(Strict):
    role: str = Field(max_length=100)
    folder: str | None = Field(None, max_length=200, description="A folder id or name.")
    value: Any = None


class JobCreate(Strict):
    entrypoint: str | list[str] | None = Field(
        None,
        description="A command string (run by /bin/sh -c) or an argv list (run without a shell). "
        "Required unless a model is given.",
    )
    model: str | None = Field(
        None,
        max_length=300,
        description="A model version: `name:version`, `name` (newest) or its id.",
    )
    environment: str | None = Field(None, max_length=200, description="Environment id or name.")
    input_folder: str | None = Field(
        None, max_length=200, description="Folder id or name, read-only."
    )
    output_folder: str | None = Field(
        None, max_length=200, description="Folder id or name (must exist)."
    )
    role_bindings: list[RoleBindingIn] = Field(default_factory=list, max_length=100)
    continue_on_error: bool = Field(
        False, description="Notebooks: run the remaining cells after a failure."
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
    def _entrypoint(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is None:
            return v
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

    def to_request(self, idempotency_key: str | None) -> JobRequest:
        return JobRequest(
            spec=self.to_spec(idempotency_key),
            model=self.model,
            environment=self.environment,
            input_folder=self.input_folder,
            output_folder=self.output_folder,
            bindings=tuple(
                RoleBinding(role=b.role, folder=b.folder, value=b.value) for b in self.role_bindings
            ),
        )

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
            continue_on_error=self.continue_on_error,
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
    model_version_id: str | None
    model_sha256: str | None
    environment_id: str | None
    input_folder_id: str | None
    output_folder_id: str | None
    definition_id: str | None
    continue_on_error: bool
    slots: int
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
    pending_reason: str | None = None

    @classmethod
    def from_job(cls, job: Job, now: datetime, pending_reason: str | None = None) -> JobOut:
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
            model_version_id=s.model_version_id,
            model_sha256=s.model_sha256,
            environment_id=s.environment_id,
            input_folder_id=s.input_folder_id,
            output_folder_id=s.output_folder_id,
            definition_id=s.definition_id,
            continue_on_error=s.continue_on_error,
            slots=s.slots,
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
            pending_reason=pending_reason,
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
