"""The messages a job's timeline shows for what the dispatcher does."""

from __future__ import annotations

from jobyard.domain.jobs import Job


def succeeded() -> str:
    return "Job finished successfully."


def failed(exit_code: int, last_log: str, summary: str | None = None) -> str:
    how = (
        f"was killed by signal {-exit_code}"
        if exit_code < 0
        else f"failed with exit code {exit_code}"
    )
    if summary:
        how += f" ({summary})"
    tail = f", last available logs (truncated to 20,000 chars):\n{last_log}" if last_log else "."
    return f"Job entrypoint command {how}{tail}"


def start_error(reason: str) -> str:
    return f"Job entrypoint command could not be started: {reason}"


def timed_out(job: Job) -> str:
    return f"Job ran longer than its timeout of {job.spec.timeout_s:g} s and was stopped."


def cancelled(force: bool) -> str:
    return "Job was cancelled" + (" (killed at once)." if force else " (stopped gracefully).")


def node_lost(node_id: str | None, why: str) -> str:
    return f"The node running this job ({node_id or 'unknown'}) was lost: {why}."


def fenced(node_id: str | None, seconds: float) -> str:
    """A node that lost the database stopped the job (self-fencing)."""
    return (
        f"The node running this job ({node_id or 'unknown'}) could not reach the database for"
        f" {seconds:.0f} s and stopped its jobs, so that no other node runs them twice."
    )


def lease_not_renewed(node_id: str | None) -> str:
    """Another node reaped the job: its node stopped renewing the lease."""
    return (
        f"The node running this job ({node_id or 'unknown'}) stopped renewing its lease"
        " (it died or lost the database)."
    )
