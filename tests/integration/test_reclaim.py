"""A job re-claimed by the node that still runs its previous attempt (retry backoff 0):
the end of the old attempt removes only that attempt, so the new one keeps its place
among the node's attempts, its lease is renewed and it is not reaped while it runs.
Real processes, both databases."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from jobyard.dispatch.attempt import Attempt
from jobyard.dispatch.ending import StopReason
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import ErrorType, JobSpec
from jobyard.domain.states import JobState
from jobyard.store.claims import AttemptEnd
from jobyard.wiring import Services
from tests.conftest import GATES, ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)

#: attempt 1 runs until ``release`` exists; attempt 2 says it started and runs until
#: ``stop2`` (the gates are files the test makes; each attempt says it started in its log)
SCRIPT = """
import os, pathlib, time
d = pathlib.Path(os.environ["GATES"])
if os.environ["JOBYARD_ATTEMPT"] == "1":
    print("started1", flush=True)
    while not (d / "release").exists():
        time.sleep(0.02)
else:
    print("started2", flush=True)
    while not (d / "stop2").exists():
        time.sleep(0.02)
"""


def _said(services: Services, job_id: str, attempt: int, word: str) -> bool:
    log = services.settings.data_dir / "jobs" / job_id / "logs" / f"attempt-{attempt}.log"
    return log.exists() and word in log.read_text()


def test_the_old_attempts_end_does_not_remove_the_new_attempt(
    make_services: ServicesFactory, tmp_path: Path
) -> None:
    # the supervisor renews leases only when the test says so (one beat at its start);
    # no self-fencing meanwhile (it needs a tolerance of two heartbeats at least)
    services = make_services(
        heartbeat_interval_s=3600.0,
        outage_tolerance_s=7200.0,
        lease_ttl_s=7300.0,
        reap_interval_s=3600.0,
    )
    dispatcher = services.dispatcher
    assert dispatcher is not None
    gates = tmp_path / GATES
    job, _ = services.jobs.submit(
        ADMIN,
        JobSpec(
            argv=(PY, "-c", SCRIPT),
            env={"GATES": str(gates)},
            max_attempts=2,
            retry_backoff_s=0.0,
        ),
    )
    first = wait_for(
        lambda: (j := services.jobs.get(ADMIN, job.id)).state is JobState.RUNNING and j
    )
    wait_for(lambda: _said(services, job.id, 1, "started1"))
    old = dispatcher.attempts.get(job.id)
    assert old is not None and old.job.lease_epoch == first.lease_epoch == 1

    removed = threading.Event()  # set once attempt 1's end was handled
    real_remove = dispatcher.attempts.remove

    def remove(which: Attempt | str) -> None:
        real_remove(which)  # type: ignore[arg-type]
        if which is old or which == job.id:
            removed.set()

    dispatcher.attempts.remove = remove  # type: ignore[method-assign,assignment]

    # the lease is lost while the process runs: another node fails the attempt as
    # NODE_LOST (as its reaper does once the lease expired); backoff 0 queues it at once
    ended = dispatcher.claims.end_attempts(
        [
            AttemptEnd(
                job=first,
                target=JobState.FAILED,
                message="its lease expired without a heartbeat",
                error_type=ErrorType.NODE_LOST.value,
            )
        ],
        services.clock.now(),
    )
    assert ended[0].ended is not None and ended[0].ended.state is JobState.QUEUED
    dispatcher.job_queued()
    # ... and this node claims it again while attempt 1 still runs
    wait_for(lambda: _said(services, job.id, 2, "started2"))
    second = wait_for(
        lambda: (j := services.jobs.get(ADMIN, job.id)).state is JobState.RUNNING and j
    )
    assert (second.attempt, second.lease_epoch) == (2, 2)
    new = dispatcher.attempts.get(job.id)
    assert new is not None and new is not old
    # attempt 1 ends (killed as no longer ours when the job was claimed again, or at
    # the latest when it is released): its end is not written, its attempt removed
    (gates / "release").touch()
    assert removed.wait(30)

    assert dispatcher.attempts.get(job.id) is new
    assert dispatcher.running_count() == 1
    assert old.stop_reason is StopReason.LOST
    current = services.jobs.get(ADMIN, job.id)
    assert (current.state, current.attempt, current.lease_epoch) == (JobState.RUNNING, 2, 2)
    # the next heartbeat renews attempt 2's lease: the reaper of another node leaves it
    before = current.lease_expires_at
    dispatcher.supervisor.heartbeat()
    renewed = services.jobs.get(ADMIN, job.id)
    assert before is not None and renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > before

    (gates / "stop2").touch()
    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).is_terminal and j)
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    wait_for(lambda: dispatcher.running_count() == 0)
