"""Queue insight for a waiting job: its position, when it may start, how long it may
run (from the history of its model version or job type), and why it waits."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.store.jobs import JobStore


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


def insight(store: JobStore, job: Job, now: datetime, alive_since: datetime) -> Insight:
    estimate = estimate_duration(store, job)
    if job.state not in (JobState.QUEUED, JobState.SCHEDULED):
        return Insight(None, None, estimate, None)
    start_floor = max(now, job.not_before or now, job.spec.scheduled_at or now)
    if job.state is JobState.SCHEDULED:
        return Insight(None, start_floor, estimate, None)
    ahead = store.ahead_in_queue(job)
    used, total = store.used_and_total_slots(alive_since)
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
