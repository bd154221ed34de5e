"""How an attempt ends: from why it stopped (and its exit code) to the job's end state,
message and error type. Pure: no I/O, no clock."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from jobyard.dispatch import messages
from jobyard.domain.jobs import ErrorType, Job
from jobyard.domain.states import JobState
from jobyard.executors.base import ExecutorFailure


class StopReason(enum.Enum):
    """Why the node stopped an attempt before its process ended by itself."""

    CANCEL = "cancel"  #: a user cancelled the job (state ``cancelling``)
    TIMEOUT = "timeout"  #: its running time passed ``timeout_s``
    MEMORY = "memory"  #: its process tree used more than the environment's limit
    SHUTDOWN = "shutdown"  #: this node shuts down
    FENCED = "fenced"  #: this node could not renew the lease for too long (self-fencing)
    LOST = "lost"  #: the lease is no longer this node's: write nothing


@dataclass(frozen=True)
class Outcome:
    target: JobState
    message: str
    error_type: str | None


def cancelled(force: bool) -> Outcome:
    """The end of an attempt whose job was cancelled."""
    return Outcome(JobState.CANCELLED, messages.cancelled(force), ErrorType.CANCELLED.value)


def shut_down(node_id: str) -> Outcome:
    return Outcome(
        JobState.FAILED,
        messages.node_lost(node_id, "the node shut down"),
        ErrorType.NODE_LOST.value,
    )


def fenced(node_id: str, seconds: float) -> Outcome:
    """The end of an attempt this node stopped because it lost the database."""
    return Outcome(JobState.FAILED, messages.fenced(node_id, seconds), ErrorType.NODE_LOST.value)


def after_exit(
    reason: StopReason | None,
    code: int,
    *,
    job: Job,
    node_id: str,
    memory_limit_bytes: int | None,
    log_tail: Callable[[], str],
    summary: str | None,
    cancel_force: bool = False,
    fenced_after_s: float = 0.0,
    failure: ExecutorFailure | None = None,
) -> Outcome | None:
    """The end of an attempt whose process exited with ``code``; None when the attempt
    is no longer this node's (nothing may be written). ``log_tail`` is called only for
    a failure's message; ``failure``: how the executor says the attempt ended when not
    by its own exit (a lost cluster), unless the node stopped it first."""
    if reason is StopReason.LOST:
        return None
    if reason is StopReason.FENCED:
        return fenced(node_id, fenced_after_s)
    if reason is StopReason.CANCEL:
        return cancelled(cancel_force)
    if reason is StopReason.MEMORY:
        limit = (memory_limit_bytes or 0) // (1024 * 1024)
        return Outcome(
            JobState.FAILED,
            f"Job used more memory than its environment's limit of {limit} MB and was killed.",
            ErrorType.MEMORY_LIMIT_EXCEEDED.value,
        )
    if reason is StopReason.TIMEOUT:
        return Outcome(JobState.TIMED_OUT, messages.timed_out(job), ErrorType.TIMEOUT.value)
    if reason is StopReason.SHUTDOWN:
        return shut_down(node_id)
    if failure is not None:
        return Outcome(JobState.FAILED, failure.message, failure.error_type)
    if code == 0:
        return Outcome(JobState.SUCCEEDED, messages.succeeded(), None)
    return Outcome(
        JobState.FAILED,
        messages.failed(code, log_tail(), summary),
        ErrorType.ENTRYPOINT_COMMAND_ERROR.value,
    )


def unstarted(
    reason: StopReason | None,
    failure: Outcome,
    *,
    node_id: str,
    cancel_force: bool = False,
    fenced_after_s: float = 0.0,
) -> Outcome | None:
    """The end of an attempt that never ran: ``failure`` (setup or start error) unless
    it was stopped first; None when it is no longer this node's."""
    if reason is StopReason.LOST:
        return None
    if reason is StopReason.FENCED:
        return fenced(node_id, fenced_after_s)
    if reason is StopReason.SHUTDOWN:
        return shut_down(node_id)
    if reason is StopReason.CANCEL:
        return cancelled(cancel_force)
    return failure


def setup_failed(message: str, error_type: str) -> Outcome:
    return Outcome(JobState.FAILED, message, error_type)


def start_failed(reason: str) -> Outcome:
    return Outcome(
        JobState.FAILED,
        messages.start_error(reason),
        ErrorType.ENTRYPOINT_COMMAND_START_ERROR.value,
    )


def node_lost(job: Job, why: str) -> Outcome:
    """The end of another life's (or another node's) attempt: cancelled if a cancel was
    pending, else failed as NODE_LOST."""
    return lost(job, messages.node_lost(job.lease_owner, why))


def lease_expired(job: Job) -> Outcome:
    """The end of another node's attempt whose lease expired (reaped)."""
    return lost(job, messages.lease_not_renewed(job.lease_owner))


def lost(job: Job, message: str) -> Outcome:
    """An attempt whose node is gone, with ``message`` saying why: cancelled if a
    cancel was pending, else failed as NODE_LOST."""
    if job.state is JobState.CANCELLING:
        return Outcome(
            JobState.CANCELLED,
            messages.cancelled(job.cancel_force) + " " + message,
            ErrorType.CANCELLED.value,
        )
    return Outcome(JobState.FAILED, message, ErrorType.NODE_LOST.value)


def exited_unwatched(job: Job, code: int, log_tail: Callable[[], str]) -> Outcome:
    """The end of an attempt whose process exited with ``code`` while no node watched
    it (the server was down; the code comes from the attempt's exit status file)."""
    if job.state is JobState.CANCELLING:
        return cancelled(job.cancel_force)
    if code == 0:
        return Outcome(JobState.SUCCEEDED, messages.succeeded(), None)
    return Outcome(
        JobState.FAILED,
        messages.failed(code, log_tail()),
        ErrorType.ENTRYPOINT_COMMAND_ERROR.value,
    )
