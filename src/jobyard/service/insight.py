"""Queue insight for a waiting job: its position, when it may start, how long it may
run (from the history of its model version or job type), and why it waits (the rule
the claim holds it back by, asked of the store: ``store/admission.py``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobyard.clock import Clock
from jobyard.domain import fairshare
from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.store.admission import Admission, Hold, Rule
from jobyard.store.jobs import JobStore

#: a node that has not heartbeat for this long does not count as capacity
NODE_ALIVE = timedelta(seconds=60)


@dataclass(frozen=True)
class DurationEstimate:
    median_s: float
    p90_s: float
    samples: int
    basis: str  #: "model_version", "job_type" or "all_jobs"


@dataclass(frozen=True)
class Insight:
    position: int | None  #: 1 = next to start
    estimated_start: datetime | None
    estimated_duration: DurationEstimate | None
    note: str | None  #: why an estimate is missing
    ahead: int = 0  #: queued jobs before this one
    used_slots: int = 0
    total_slots: int = 0


def estimate_duration(store: JobStore, job: Job) -> DurationEstimate | None:
    if job.spec.model_version_id:
        durations = store.recent_durations(model_version_id=job.spec.model_version_id)
        if durations:
            return _estimate(durations, "model_version")
    if job.spec.job_type:
        durations = store.recent_durations(job_type=job.spec.job_type)
        if durations:
            return _estimate(durations, "job_type")
    return None


def _estimate(durations: list[float], basis: str) -> DurationEstimate:
    ordered = sorted(durations)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return DurationEstimate(statistics.median(ordered), p90, len(ordered), basis)


def insight(
    store: JobStore, job: Job, now: datetime, slots: Callable[[], tuple[int, int]]
) -> Insight:
    """``slots``: the slots in use and those of the active nodes (read only for a
    queued job)."""
    estimate = estimate_duration(store, job)
    if job.state not in (JobState.QUEUED, JobState.SCHEDULED):
        return Insight(None, None, estimate, None)
    start_floor = max(now, job.not_before or now, job.spec.scheduled_at or now)
    if job.state is JobState.SCHEDULED:
        return Insight(None, start_floor, estimate, None)
    ahead = store.ahead_in_queue(job)
    used, total = slots()
    counts = {"ahead": ahead, "used_slots": used, "total_slots": total}
    if total == 0:
        return Insight(ahead + 1, None, estimate, "no active node to run it", **counts)
    free = max(0, total - used)
    if ahead < free:
        return Insight(ahead + 1, start_floor, estimate, None, **counts)
    typical = store.recent_durations(limit=100)
    if not typical:
        note = "no history of finished jobs to estimate from"
        return Insight(ahead + 1, None, estimate, note, **counts)
    rounds = (ahead - free) // total + 1
    wait = timedelta(seconds=rounds * statistics.median(typical))
    return Insight(ahead + 1, max(start_floor, now + wait), estimate, None, **counts)


class InsightService:
    """Where a waiting job stands and why it waits."""

    def __init__(
        self,
        *,
        store: JobStore,
        admission: Admission,
        clock: Clock,
        default_max_running: int | None = None,
        capacity_reason: str | None = None,
    ) -> None:
        self.store = store
        self.admission = admission
        self.clock = clock
        #: the running-jobs quota of a tenant without one of its own (as the claim's)
        self.default_max_running = default_max_running
        #: what a job waiting for a slot waits for, when the slots are not the node's
        self.capacity_reason = capacity_reason

    def insight(self, job: Job) -> Insight:
        now = self.clock.now()
        return insight(self.store, job, now, lambda: self.admission.slots(now - NODE_ALIVE))

    def describe(self, job: Job) -> tuple[str | None, Insight]:
        """Why a waiting job waits (in words; None once it runs) and its queue insight."""
        ins = self.insight(job)
        return self._pending_reason(job, ins), ins

    def pending_reason(self, job: Job) -> str | None:
        return self.describe(job)[0]

    def _pending_reason(self, job: Job, ins: Insight) -> str | None:
        if job.state is JobState.SCHEDULED and job.spec.scheduled_at is not None:
            return f"scheduled: waits for its start time {job.spec.scheduled_at.isoformat()}"
        if job.state is not JobState.QUEUED:
            return None
        now = self.clock.now()
        if job.not_before is not None and job.not_before > now:
            return f"retry_backoff: the next attempt starts after {job.not_before.isoformat()}"
        hold = self.admission.hold(
            job,
            default_max_running=self.default_max_running,
            used_slots=ins.used_slots,
            total_slots=ins.total_slots,
            now=now,
        )
        if hold is not None:
            return self._reason(job, hold)
        if ins.ahead:
            return f"priority: {ins.ahead} job(s) ahead in the queue"
        return None

    def _reason(self, job: Job, hold: Hold) -> str:
        if hold.rule is Rule.ENVIRONMENT:
            return (
                f"concurrency_limit: environment configuration {hold.environment!r} already"
                f" runs {hold.active} of its {hold.limit} allowed job(s)"
            )
        if hold.rule is Rule.QUOTA:
            return (
                f"quota: the tenant already runs {hold.active} of its {hold.limit} allowed job(s)"
            )
        if hold.rule is Rule.FAIR_SHARE and hold.standings is not None:
            tenant = job.tenant_id
            used, share, factor = fairshare.shares(hold.standings)[tenant]
            return (
                f"fair share: tenant {tenant} is over its share (it holds"
                f" {max(hold.standings[tenant].running, 0)} slot(s) and used {used:.0%} of the"
                f" recent slot time of the tenants waiting, for a share of {share:.0%}; factor"
                f" {factor:.2f}); other tenants' jobs start first"
            )
        if self.capacity_reason:
            return f"capacity: {self.capacity_reason} (all {hold.limit} slots in use)"
        return f"capacity: all {hold.limit} slots of the active nodes are in use"
