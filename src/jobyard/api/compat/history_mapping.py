"""Wire shapes of the job history API (spec 002) and their translation from jobyard's
jobs (``docs/compat-history.md`` lists every field and status)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from jobyard import errors
from jobyard.api.schemas.jobs import ItemsOut
from jobyard.domain.jobs import Job
from jobyard.domain.registry import ModelVersion
from jobyard.domain.states import JobState

S = JobState
#: the ``status`` filter's values → jobyard states (an empty set: no filter)
STATUS_FILTERS: dict[str, frozenset[JobState]] = {
    "all": frozenset(),
    "pending": frozenset({S.SCHEDULED, S.QUEUED, S.STARTING, S.RUNNING, S.CANCELLING}),
    "timedout": frozenset({S.TIMED_OUT}),
    "terminated": frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
}
TRUE = frozenset({"true", "1", "yes", "on"})


def states_for(value: str) -> frozenset[JobState]:
    """The states a ``status`` filter value selects (422 for an unknown value)."""
    found = STATUS_FILTERS.get(value.strip().lower())
    if found is None:
        allowed = ", ".join(STATUS_FILTERS)
        raise errors.InvalidInput(f"status: {value!r} is not one of {allowed}", field="status")
    return found


def status_name(state: JobState) -> str:
    """``RUNNING``, ``SUCCEEDED`` …; ``timed_out`` is the spec's ``TIMEDOUT``."""
    return "TIMEDOUT" if state is S.TIMED_OUT else state.value.upper()


def iso(value: datetime | None) -> str | None:
    """``YYYY-MM-DDThh:mm:ss.sTZD`` with milliseconds, in UTC (``Z``)."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def _flag(job: Job, key: str) -> bool:
    return str(job.spec.metadata.get(key, "")).strip().lower() in TRUE


class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    kind: str

    @classmethod
    def of(cls, v: ModelVersion) -> ModelOut:
        return cls(id=v.id, name=v.model_name, version=v.version, kind=v.kind.value)


class UserOut(BaseModel):
    name: str | None


def _items(job: Job) -> ItemsOut:
    """Batch jobs count their items; any other job is one item."""
    counted = ItemsOut.of(job)
    if counted is not None:
        return counted
    done = int(job.state is S.SUCCEEDED)
    failed = int(job.is_terminal and not done)
    return ItemsOut(total=1, pending=1 - done - failed, completed=done, failed=failed)


class HistoryJob(BaseModel):
    """The spec's job object."""

    jobIdentifier: str
    submittedBy: str | None
    accountIdentifier: str
    model: ModelOut | dict[str, Any]
    status: str
    createdAt: str
    updatedAt: str
    submittedAt: str
    total: int
    pending: int
    completed: int
    failed: int
    elapsedTime: int | None
    queueTime: int | None
    timeout: int | None
    explain: bool
    user: UserOut
    jobInputs: list[Any] | None
    inputByteAmount: int
    imageClassificationModel: bool

    @classmethod
    def of(
        cls, job: Job, now: datetime, model: ModelVersion | None, inputs: list[Any] | None
    ) -> HistoryJob:
        s, items = job.spec, _items(job)
        return cls(
            jobIdentifier=job.id,
            submittedBy=s.submitted_by,
            accountIdentifier=job.tenant_id,
            model=ModelOut.of(model) if model else {},
            status=status_name(job.state),
            createdAt=iso(job.created_at) or "",
            updatedAt=iso(job.updated_at) or "",
            submittedAt=iso(job.queued_at or job.created_at) or "",
            total=items.total,
            pending=items.pending,
            completed=items.completed,
            failed=items.failed,
            elapsedTime=_ms(job.started_at, job.ended_at or now) if job.started_at else None,
            queueTime=_ms(
                job.queued_at or job.created_at,
                job.started_at or (None if job.is_terminal else now),
            ),
            timeout=round(s.timeout_s * 1000) if s.timeout_s is not None else None,
            explain=_flag(job, "explain"),
            user=UserOut(name=s.submitted_by),
            jobInputs=inputs,
            inputByteAmount=s.input_bytes or 0,
            imageClassificationModel=_flag(job, "imageClassificationModel"),
        )


class HistoryPage(BaseModel):
    """A page (``page`` counts from 1)."""

    items: list[HistoryJob]
    page: int
    pageSize: int
    total: int
    hasNextPage: bool
