"""When a failed attempt is tried again, and after how long (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobyard.domain.jobs import ErrorType, Job
from jobyard.domain.states import JobState

OUTCOMES = ("failed", "timed_out", "node_lost")
MAX_BACKOFF_S = 3600.0
JITTER = 0.2


def outcome(state: JobState, error_type: str | None) -> str | None:
    """The retry outcome name of an ending attempt (None: never retried, e.g. cancelled)."""
    if state is JobState.TIMED_OUT:
        return "timed_out"
    if state is JobState.FAILED:
        return "node_lost" if error_type == ErrorType.NODE_LOST.value else "failed"
    return None


@dataclass(frozen=True)
class RetryPlan:
    not_before: datetime
    message: str


def plan(
    job: Job,
    state: JobState,
    error_type: str | None,
    now: datetime,
    rng: random.Random | None = None,
) -> RetryPlan | None:
    """A retry of ``job`` whose current attempt ends in ``state``, or None."""
    kind = outcome(state, error_type)
    if kind is None or kind not in job.spec.retry_on or job.attempt >= job.spec.max_attempts:
        return None
    base = job.spec.retry_backoff_s * (2 ** (job.attempt - 1))
    jitter = 1 + JITTER * (2 * (rng or random.SystemRandom()).random() - 1)
    delay = min(MAX_BACKOFF_S, base * jitter)
    return RetryPlan(
        not_before=now + timedelta(seconds=delay),
        message=(
            f"Attempt {job.attempt} of {job.spec.max_attempts} ended {kind.replace('_', ' ')}; "
            f"retrying in {delay:.1f} s."
        ),
    )
