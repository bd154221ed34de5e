"""Job states and the one transition table.

::

    scheduled ─► queued ─► starting ─► running ─► succeeded
        │          │           │          ├──────► failed      (exit ≠ 0, error, node lost)
        │          │           │          ├──────► timed_out   (running time > limit)
        └──────────┴───────────┴──► cancelling ─► cancelled    (graceful, then forced)

    scheduled/queued jobs cancel at once; a start error fails the job;
    failed/timed_out with attempts left go back to queued.

Every change of state goes through :func:`check_transition`; the store applies it
as a compare-and-set together with an event row.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from jobyard import errors


class JobState(StrEnum):
    SCHEDULED = "scheduled"  #: waits for its start time
    QUEUED = "queued"  #: waits for a slot
    STARTING = "starting"  #: claimed by a node, process being started
    RUNNING = "running"  #: its process runs
    CANCELLING = "cancelling"  #: cancel requested, process being stopped
    SUCCEEDED = "succeeded"  #: exited 0
    FAILED = "failed"  #: exited non-zero, could not start, or its node was lost
    TIMED_OUT = "timed_out"  #: ran longer than its timeout
    CANCELLED = "cancelled"  #: stopped on request


TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.CANCELLED}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLING}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLING}
    ),
    JobState.CANCELLING: frozenset({JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.TIMED_OUT: frozenset({JobState.QUEUED}),
    JobState.CANCELLED: frozenset(),
}

#: States a job never leaves on its own (failed/timed_out only leave for a retry).
TERMINAL: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)
#: States in which a node owns the job and holds its lease.
ACTIVE: frozenset[JobState] = frozenset({JobState.STARTING, JobState.RUNNING, JobState.CANCELLING})
#: States of a job that waits to run.
PENDING: frozenset[JobState] = frozenset({JobState.SCHEDULED, JobState.QUEUED})


def can_transition(old: JobState, new: JobState) -> bool:
    """Whether the table allows ``old`` → ``new``."""
    return new in TRANSITIONS[old]


def check_transition(old: JobState, new: JobState) -> None:
    """Raise :class:`errors.InvalidTransition` unless ``old`` → ``new`` is allowed."""
    if not can_transition(old, new):
        raise errors.InvalidTransition(
            f"a job cannot go from {old.value} to {new.value}",
            current=old.value,
            requested=new.value,
        )
