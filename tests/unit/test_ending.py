"""How an attempt ends: every stop reason, exit codes, unstarted attempts, lost nodes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobyard.dispatch import ending
from jobyard.dispatch.ending import Outcome, StopReason
from jobyard.domain.jobs import Job, JobSpec, ResourceUsage
from jobyard.domain.states import JobState, can_transition

NOW = datetime(2026, 12, 6, tzinfo=UTC)
S = JobState


def _job(state: JobState = S.RUNNING, *, cancel_force: bool = False) -> Job:
    return Job(
        id="j1",
        seq=1,
        tenant_id="t",
        spec=JobSpec(argv=("true",), timeout_s=5),
        state=state,
        attempt=1,
        lease_epoch=1,
        lease_owner="node-a",
        lease_expires_at=None,
        created_at=NOW,
        updated_at=NOW,
        queued_at=NOW,
        started_at=NOW,
        ended_at=None,
        exit_code=None,
        error_type=None,
        message=None,
        pid=None,
        node_id="node-a",
        cancel_force=cancel_force,
        usage=ResourceUsage(),
    )


def _after(reason: StopReason | None, code: int, **kw: object) -> Outcome | None:
    def tail() -> str:
        return "boom"

    return ending.after_exit(
        reason,
        code,
        job=_job(),
        node_id="node-a",
        memory_limit_bytes=kw.pop("memory", None),  # type: ignore[arg-type]
        log_tail=tail,
        summary=kw.pop("summary", None),  # type: ignore[arg-type]
        cancel_force=bool(kw.pop("force", False)),
        fenced_after_s=float(kw.pop("fenced_after_s", 0.0)),  # type: ignore[arg-type]
    )


def test_exit_zero_succeeds_without_error_type() -> None:
    assert _after(None, 0) == Outcome(S.SUCCEEDED, "Job finished successfully.", None)


@pytest.mark.parametrize(
    ("code", "how"), [(3, "failed with exit code 3"), (-9, "was killed by signal 9")]
)
def test_nonzero_exit_fails_with_the_log_tail(code: int, how: str) -> None:
    outcome = _after(None, code, summary="cell 2 failed")
    assert outcome is not None
    assert (outcome.target, outcome.error_type) == (S.FAILED, "ENTRYPOINT_COMMAND_ERROR")
    assert how in outcome.message and "(cell 2 failed)" in outcome.message
    assert outcome.message.endswith("boom")


def test_the_log_tail_is_read_only_for_a_failure() -> None:
    def tail() -> str:
        raise AssertionError("read")

    for reason in (None, *StopReason):
        ending.after_exit(
            reason,
            0,
            job=_job(),
            node_id="n",
            memory_limit_bytes=None,
            log_tail=tail,
            summary=None,
        )


@pytest.mark.parametrize("code", [0, 1, -15])
def test_stop_reasons_decide_whatever_the_exit_code(code: int) -> None:
    assert _after(StopReason.LOST, code) is None
    timeout = _after(StopReason.TIMEOUT, code)
    assert timeout is not None and (timeout.target, timeout.error_type) == (S.TIMED_OUT, "TIMEOUT")
    assert "timeout of 5 s" in timeout.message
    memory = _after(StopReason.MEMORY, code, memory=256 * 1024 * 1024)
    assert memory is not None
    assert (memory.target, memory.error_type) == (S.FAILED, "MEMORY_LIMIT_EXCEEDED")
    assert "256 MB" in memory.message
    shutdown = _after(StopReason.SHUTDOWN, code)
    assert shutdown is not None and (shutdown.target, shutdown.error_type) == (
        S.FAILED,
        "NODE_LOST",
    )
    assert "node-a" in shutdown.message and "shut down" in shutdown.message
    for force, how in ((False, "gracefully"), (True, "killed at once")):
        cancel = _after(StopReason.CANCEL, code, force=force)
        assert cancel is not None and (cancel.target, cancel.error_type) == (
            S.CANCELLED,
            "CANCELLED",
        )
        assert how in cancel.message


def test_unstarted_attempts() -> None:
    failure = ending.setup_failed("no such model", "RUNTIME_ENV_SETUP_FAILED")
    assert ending.unstarted(None, failure, node_id="n") is failure
    assert ending.unstarted(StopReason.LOST, failure, node_id="n") is None
    assert ending.unstarted(StopReason.SHUTDOWN, failure, node_id="n") == ending.shut_down("n")
    cancelled = ending.unstarted(StopReason.CANCEL, failure, node_id="n", cancel_force=True)
    assert cancelled == ending.cancelled(True)
    start = ending.start_failed("no such file")
    assert (start.target, start.error_type) == (S.FAILED, "ENTRYPOINT_COMMAND_START_ERROR")
    assert "could not be started: no such file" in start.message


@pytest.mark.parametrize("state", [S.STARTING, S.RUNNING, S.CANCELLING])
def test_node_lost_fails_or_finishes_the_cancel(state: JobState) -> None:
    outcome = ending.node_lost(_job(state, cancel_force=True), "its lease expired")
    assert can_transition(state, outcome.target)
    assert "node-a" in outcome.message and "its lease expired" in outcome.message
    if state is S.CANCELLING:
        assert (outcome.target, outcome.error_type) == (S.CANCELLED, "CANCELLED")
        assert "killed at once" in outcome.message
    else:
        assert (outcome.target, outcome.error_type) == (S.FAILED, "NODE_LOST")


def test_a_fenced_attempt_says_its_node_lost_the_database() -> None:
    outcome = _after(StopReason.FENCED, -9, fenced_after_s=35.2)
    assert outcome is not None
    assert (outcome.target, outcome.error_type) == (S.FAILED, "NODE_LOST")
    assert outcome.message == (
        "The node running this job (node-a) could not reach the database for 35 s and"
        " stopped its jobs, so that no other node runs them twice."
    )


def test_an_exit_seen_only_at_restart_is_the_job_s_own_outcome() -> None:
    ok = ending.exited_unwatched(_job(), 0, lambda: "unused")
    assert (ok.target, ok.error_type) == (S.SUCCEEDED, None)
    failed = ending.exited_unwatched(_job(), 3, lambda: "last line")
    assert (failed.target, failed.error_type) == (S.FAILED, "ENTRYPOINT_COMMAND_ERROR")
    assert "exit code 3" in failed.message and "last line" in failed.message
    cancelled = ending.exited_unwatched(_job(S.CANCELLING), 0, lambda: "")
    assert cancelled.target is S.CANCELLED
