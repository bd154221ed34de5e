"""Wire shapes of the job history API (spec 002) and their translation from jobyard's
jobs (``docs/reference/compat-history.md`` lists every field and status)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from jobyard import errors
from jobyard.api.compat.wire import iso_ms
from jobyard.api.schemas.jobs import ItemsOut
from jobyard.clock import elapsed_ms
from jobyard.domain.jobs import Job
from jobyard.domain.registry import ModelVersion
from jobyard.domain.states import JobState

#: the ``status`` filter's values → jobyard states (an empty set: no filter)
STATUS_FILTERS: dict[str, frozenset[JobState]] = {
    "all": frozenset(),
    "pending": frozenset(
        {
            JobState.SCHEDULED,
            JobState.QUEUED,
            JobState.STARTING,
            JobState.RUNNING,
            JobState.CANCELLING,
        }
    ),
    "timedout": frozenset({JobState.TIMED_OUT}),
    "terminated": frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
}
#: states named in the spec's words; the others answer their name in upper case
SPEC_STATUS = {
    JobState.SCHEDULED: "PENDING",
    JobState.QUEUED: "PENDING",
    JobState.TIMED_OUT: "TIMEDOUT",
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
    """The state in upper case (``RUNNING``, ``SUCCEEDED`` …) in the spec's words where it
    has them: a job that waits to start is ``PENDING``, ``timed_out`` is ``TIMEDOUT``."""
    return SPEC_STATUS.get(state) or state.value.upper()


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
    """The items submitted to the job and their fate: a job without batch items has
    none (its ``status`` tells how it went)."""
    return ItemsOut.of(job) or ItemsOut(total=0, pending=0, completed=0, failed=0)


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
    elapsedTime: int
    queueTime: int
    timeout: int | None
    explain: bool
    user: UserOut
    jobInputs: list[Any]
    inputByteAmount: int
    imageClassificationModel: bool

    @classmethod
    def of(
        cls, job: Job, now: datetime, model: ModelVersion | None, inputs: list[Any]
    ) -> HistoryJob:
        s, items = job.spec, _items(job)
        submitted = job.queued_at or job.created_at
        return cls(
            jobIdentifier=job.id,
            submittedBy=s.submitted_by,
            accountIdentifier=job.tenant_id,
            model=ModelOut.of(model) if model else {},
            status=status_name(job.state),
            # the spec's YYYY-MM-DDThh:mm:ss.sTZD
            createdAt=iso_ms(job.created_at),
            updatedAt=iso_ms(job.updated_at),
            submittedAt=iso_ms(submitted),
            total=items.total,
            pending=items.pending,
            completed=items.completed,
            failed=items.failed,
            # a job that never started waited all its life and ran for 0 ms
            elapsedTime=elapsed_ms(job.started_at, job.ended_at or now) if job.started_at else 0,
            queueTime=elapsed_ms(submitted, job.started_at or job.ended_at or now),
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
