"""The mindzie Job Execution API (spec 001) ↔ jobyard: statuses, priorities, the spec's
text values, request bodies and the job and list objects. Pure translation (no FastAPI,
no runtime); the tables are in ``docs/reference/compat-mindzie.md``."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobyard import errors, notify
from jobyard.api.schemas.jobs import MetricsOut, ProgressOut
from jobyard.clock import ensure_utc
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.service.insight import Insight
from jobyard.service.submission import JobRequest

STATUS: dict[JobState, str] = {
    **dict.fromkeys((JobState.SCHEDULED, JobState.QUEUED, JobState.STARTING), "Queued"),
    **dict.fromkeys((JobState.RUNNING, JobState.CANCELLING), "Running"),
    **dict.fromkeys((JobState.FAILED, JobState.TIMED_OUT), "Failed"),
    JobState.SUCCEEDED: "Completed",
    JobState.CANCELLED: "Cancelled",
}
STATUS_NAMES = ("Queued", "Running", "Completed", "Failed", "Cancelled")
UNITS = (("hours", 3600), ("minutes", 60), ("seconds", 1))
#: job metadata keys that keep the submitted ``resource``
META = {k: f"mindzie.{k}" for k in ("resourceType", "resourceId", "resourceName")}
#: native error fields the service may name → the spec's names
SPEC_FIELDS = {
    "model": "resource.resourceId",
    "entrypoint": "command",
    "notifications.emails": "notifications.emailRecipients",
}


# ---- values -------------------------------------------------------------------------
def iso(value: datetime | None) -> str | None:
    """``2024-01-20T10:30:00Z``: UTC to the second."""
    return None if value is None else f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _num(x: float) -> str:
    """One decimal (two below 1), without a trailing zero."""
    return (f"{x:.2f}" if x < 1 else f"{x:.1f}").rstrip("0").rstrip(".")


def _unit(seconds: float, factor: float = 1) -> tuple[str, int]:
    return next((u, per) for u, per in UNITS if seconds >= factor * per or per == 1)


def spoken(seconds: float) -> str:
    """``8 minutes 32 seconds``, ``1 hour 5 minutes``, ``0 seconds``."""
    rest, parts = int(seconds), []
    for unit, per in UNITS:
        n, rest = divmod(rest, per)
        if n:
            parts.append(f"{n} {unit if n != 1 else unit[:-1]}")
    return " ".join(parts) or "0 seconds"


def decimal(value: float | None, unit_s: float = 1) -> str | None:
    """``38.5 minutes``: hours, minutes or seconds with one decimal (``value × unit_s`` s)."""
    if value is None:
        return None
    unit, per = _unit(value * unit_s)
    n = _num(value * unit_s / per)
    return f"{n} {unit if n != '1' else unit[:-1]}"


def size(n: float | None) -> str | None:
    """``2.1 GB``, ``890 KB``, ``12 B`` (units of 1024)."""
    if n is None:
        return None
    value, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{round(value) if value >= 100 or unit == 'B' else _num(value)} {unit}"


def span(low_s: float, high_s: float) -> str:
    """``45-60 minutes`` from a median and a 90th percentile."""
    unit, per = _unit(high_s, 2)
    low = max(1, round(low_s / per))
    high = max(low, math.ceil(high_s / per))
    return f"{low} {unit if low != 1 else unit[:-1]}" if low == high else f"{low}-{high} {unit}"


def _bad(field: str, why: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"{field}: {why}", field=field)


def parse_priority(value: str, field: str = "priority") -> Priority:
    try:
        return Priority(value.strip().lower())
    except ValueError:
        names = ", ".join(p.value.capitalize() for p in Priority)
        raise _bad(field, f"{value!r} is not one of {names}") from None


def states_for(names: list[str]) -> frozenset[JobState]:
    """The jobyard states of ``status`` filter values (any case)."""
    wanted = {raw.strip().capitalize() for raw in names}
    if unknown := sorted(wanted - set(STATUS_NAMES)):
        raise _bad("status", f"{unknown[0]!r} is not one of {', '.join(STATUS_NAMES)}")
    return frozenset(s for s, n in STATUS.items() if n in wanted)


# ---- requests -----------------------------------------------------------------------
class _Body(BaseModel):
    """Unknown fields are ignored, as the spec's service does."""

    model_config = ConfigDict(extra="ignore")


class ResourceIn(_Body):
    resourceType: str | None = Field(None, max_length=100)
    resourceId: str | None = Field(None, max_length=300)
    resourceName: str | None = Field(None, max_length=200, description="jobyard extension")


class SchedulingIn(_Body):
    executeImmediately: bool | None = None
    scheduledTime: datetime | None = None
    timeoutMinutes: float | None = Field(None, gt=0, le=30 * 24 * 60)


class NotificationsIn(_Body):
    onCompletion: bool = False
    onFailure: bool = False
    emailRecipients: list[str] = Field(default_factory=list, max_length=notify.MAX_EMAILS)


class JobSubmission(_Body):
    jobName: str | None = Field(None, max_length=200)
    jobDescription: str | None = Field(None, max_length=10_000)
    jobType: str | None = Field(None, max_length=100)
    priority: str = Field("Normal", description="Low, Normal, High or Critical")
    resource: ResourceIn = Field(default_factory=ResourceIn)
    parameters: dict[str, Any] = Field(default_factory=dict)
    scheduling: SchedulingIn = Field(default_factory=SchedulingIn)
    notifications: NotificationsIn | None = None
    command: str | list[str] | None = Field(
        None,
        description="jobyard extension: what the job runs, a shell command string or an argv "
        "list (else `parameters.entrypoint`, or a `Model` resource)",
    )

    def to_request(self, project_id: str, idempotency_key: str | None) -> JobRequest:
        params, plan, note = dict(self.parameters), self.scheduling, self.notifications
        model, command = _what_runs(self.command, params, self.resource)
        at = plan.scheduledTime
        if at is not None and plan.executeImmediately:
            raise _bad("scheduling.scheduledTime", "must be null when executeImmediately is true")
        if at is None and plan.executeImmediately is False:
            raise _bad("scheduling.scheduledTime", "is required when executeImmediately is false")
        spec = JobSpec(
            entrypoint=command if isinstance(command, str) else None,
            argv=tuple(command) if isinstance(command, list) else None,
            name=self.jobName,
            description=self.jobDescription,
            job_type=self.jobType,
            priority=parse_priority(self.priority),
            parameters=params,
            metadata={META[k]: v for k, v in self.resource.model_dump().items() if v is not None},
            timeout_s=plan.timeoutMinutes * 60 if plan.timeoutMinutes else None,
            scheduled_at=ensure_utc(at),
            project_id=project_id,
            idempotency_key=idempotency_key,
            notifications=notify.compat_spec(
                note.onCompletion, note.onFailure, note.emailRecipients
            )
            if note
            else None,
        )
        return JobRequest(spec=spec, model=model)


def _what_runs(
    command: str | list[str] | None, params: dict[str, Any], res: ResourceIn
) -> tuple[str | None, str | list[str] | None]:
    """(model, command): a ``Model`` resource's version; else ``command``, else
    ``parameters.entrypoint`` (taken out), else a ``resourceId`` like ``name:version``."""
    if (res.resourceType or "").strip().lower() == "model":
        if command is not None:
            raise _bad("command", "give a command or a Model resource, not both")
        if not res.resourceId:
            raise _bad("resource.resourceId", "a Model resource needs its id or name:version")
        return res.resourceId, None
    if command is None:
        command = params.pop("entrypoint", None)
    if command is not None:
        if not isinstance(command, str | list) or not all(isinstance(a, str) for a in command):
            raise _bad("command", "must be a command string or an argv list of strings")
        return None, command  # the service refuses an empty one (as ``command``)
    if res.resourceId and ":" in res.resourceId:
        return res.resourceId, None
    raise _bad("command", "nothing to run: give a command, parameters.entrypoint or a Model")


class CancelIn(_Body):
    reason: str | None = Field(None, max_length=1000)
    forceTermination: bool = False
    preservePartialResults: bool = Field(True, description="Outputs are always kept")


class RetryIn(_Body):
    retryReason: str | None = Field(None, max_length=1000)
    modifyParameters: bool | None = None
    updatedParameters: dict[str, Any] = Field(default_factory=dict)
    priority: str | None = None
    immediateExecution: bool = False

    def changes(self) -> tuple[dict[str, Any], float | None]:
        """(parameters to merge, new timeout in seconds) from ``updatedParameters``."""
        updated = dict(self.updatedParameters)
        if self.modifyParameters is False and updated:
            raise _bad("updatedParameters", "given while modifyParameters is false")
        minutes = updated.pop("timeoutMinutes", None)
        if minutes is not None and (type(minutes) not in (int, float) or minutes <= 0):
            raise _bad("updatedParameters.timeoutMinutes", "must be a number of minutes > 0")
        return updated, None if minutes is None else float(minutes) * 60


# ---- responses (JSON objects, field for field as in the spec) -----------------------
def waiting(insight: Insight) -> dict[str, Any]:
    """``queuePosition``, ``estimatedStartTime``, ``estimatedDuration`` (median–p90)."""
    d = insight.estimated_duration
    return {
        "queuePosition": insight.position,
        "estimatedStartTime": iso(insight.estimated_start),
        "estimatedDuration": span(d.median_s, d.p90_s) if d else None,
    }


def submitted(job: Job, insight: Insight) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "status": STATUS[job.state],
        **waiting(insight),
        "jobName": job.spec.name,
        "priority": job.spec.priority.value.capitalize(),
        "dateSubmitted": iso(job.created_at),
        "submittedBy": job.spec.submitted_by,
    }


def job_object(job: Job, now: datetime, insight: Insight) -> dict[str, Any]:
    """The full job (get, cancel, retry)."""
    s, p, m, u = job.spec, ProgressOut.of(job, now), MetricsOut.of(job, now), job.usage
    r = m.processing_rate
    return {
        "jobId": job.id,
        "projectId": s.project_id,
        "jobType": s.job_type,
        "jobName": s.name,
        "jobDescription": s.description,
        "status": STATUS[job.state],
        "priority": s.priority.value.capitalize(),
        "progress": {
            "percentage": round(p.percent or 0),
            "currentStage": p.stage,
            "estimatedCompletion": iso(p.estimated_completion),
            "elapsedTime": spoken((p.elapsed_ms or 0) / 1000),
        },
        "resource": {k: s.metadata.get(key) for k, key in META.items()},
        "execution": {
            "startTime": iso(job.started_at),
            "endTime": iso(job.ended_at),
            "submittedBy": s.submitted_by,
            "executionNode": job.node_id,
            "memoryUsage": size(u.rss_bytes if u.rss_bytes is not None else u.peak_rss_bytes),
            "cpuUsage": None if u.cpu_percent is None else f"{round(u.cpu_percent)}%",
            "diskUsage": size(u.disk_bytes),
        },
        "metrics": {
            "recordsProcessed": m.records_processed,
            "totalRecords": m.total_records,
            "errorCount": m.error_count,
            "warningCount": m.warning_count,
            "averageProcessingRate": None
            if r is None
            else f"{round(r) if r >= 100 else _num(r)} records/second",
        },
        **waiting(insight),
        "parameters": s.parameters,
        "error": {"type": job.error_type, "message": job.message, "exitCode": job.exit_code}
        if job.state in (JobState.FAILED, JobState.TIMED_OUT)
        else None,
        "originalJobId": s.retry_of,
        "retryReason": s.retry_reason,
        "dateCreated": iso(job.created_at),
        "lastUpdated": iso(job.updated_at),
    }


def list_item(job: Job, now: datetime) -> dict[str, Any]:
    p = ProgressOut.of(job, now)
    return {
        "jobId": job.id,
        "jobType": job.spec.job_type,
        "jobName": job.spec.name,
        "status": STATUS[job.state],
        "priority": job.spec.priority.value.capitalize(),
        "progress": round(p.percent or 0),
        "startTime": iso(job.started_at),
        "estimatedCompletion": iso(p.estimated_completion),
        "endTime": iso(job.ended_at),
        "duration": None if job.ended_at is None else spoken((p.elapsed_ms or 0) / 1000),
        "submittedBy": job.spec.submitted_by,
        "resourceName": job.spec.metadata.get(META["resourceName"]),
    }


def summary(by_status: dict[str, int]) -> dict[str, int]:
    """The list's counts from the native ``by_status`` (cancelled jobs count in the total)."""
    n = dict.fromkeys(STATUS_NAMES, 0)
    for state, count in by_status.items():
        n[STATUS[JobState(state)]] += count
    return {
        "totalJobs": sum(n.values()),
        **{f"{k.lower()}Jobs": n[k] for k in ("Running", "Queued", "Completed", "Failed")},
    }
