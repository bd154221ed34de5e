"""A node that restarts learns how the attempts of its previous life ended from their
exit status files (``Workspace.exit_status_path``, written by the executor as the
process exits), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta

from jobyard.clock import from_epoch
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.storage.exitstatus import parse_exit_code
from jobyard.storage.workspace import Workspace
from jobyard.store.claims import ClaimStore, Started
from jobyard.wiring import Services
from tests.conftest import ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def _ran_in_a_previous_life(services: Services, spec: JobSpec) -> Job:
    """A job this node (``test-node``) claimed and marked running before it died; its
    process is gone."""
    job, _ = services.jobs.submit(ADMIN, spec)
    claims = ClaimStore(services.db)
    now = services.clock.now()
    claimed = claims.claim_next(node_id="test-node", now=now, lease_ttl_s=600)
    assert claimed is not None and claimed.id == job.id
    dead = subprocess.Popen(["true"])
    dead.wait()
    [running] = claims.mark_running(
        [Started(job=claimed, pid=dead.pid, create_time=1.0, node_id="test-node", started_at=now)],
        now,
    )
    assert running is not None
    return running


def _record_exit(services: Services, job: Job, content: str, at: datetime) -> None:
    """Write the attempt's exit status as the executor does (bubblewrap's
    ``--json-status-fd`` writes several objects), modified at ``at``."""
    path = Workspace(services.settings.data_dir).exit_status_path(job.id, job.attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.utime(path, (at.timestamp(), at.timestamp()))


def test_a_restarted_node_records_the_real_outcome_of_jobs_that_ended_while_it_was_down(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False)
    workspace = Workspace(services.settings.data_dir)
    ended_at = from_epoch(int(services.clock.now().timestamp()) - 5)

    failed = _ran_in_a_previous_life(services, JobSpec(argv=(PY, "-c", "pass")))
    log = workspace.log_path(failed.id, failed.attempt)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading\nfatal: the answer is not 42\n")
    output = workspace.workdir(failed.id) / "output"
    output.mkdir(parents=True)
    (output / "partial.csv").write_text("a,b\n1,2\n")
    _record_exit(services, failed, '{ "child-pid": 12 }\n{ "exit-code": 3 }\n', ended_at)

    succeeded = _ran_in_a_previous_life(services, JobSpec(argv=(PY, "-c", "pass")))
    _record_exit(services, succeeded, '{"exit-code": 0}', ended_at)

    unknown = _ran_in_a_previous_life(services, JobSpec(argv=(PY, "-c", "pass")))
    _record_exit(services, unknown, '{ "child-pid": 12 }\n', ended_at)  # died before exiting

    assert services.dispatcher is not None
    services.dispatcher.start()  # the restart: reconcile

    done = services.jobs.get(ADMIN, failed.id)
    assert (done.state, done.exit_code, done.error_type) == (
        JobState.FAILED,
        3,
        "ENTRYPOINT_COMMAND_ERROR",
    )
    assert "exit code 3" in (done.message or "")
    assert "fatal: the answer is not 42" in (done.message or "")
    assert done.ended_at is not None
    assert abs(done.ended_at - ended_at) < timedelta(milliseconds=1)  # when it exited
    results = services.results.get(ADMIN, failed.id)
    assert [a.path for a in results.artifacts] == ["partial.csv"]

    ok = services.jobs.get(ADMIN, succeeded.id)
    assert (ok.state, ok.exit_code, ok.error_type) == (JobState.SUCCEEDED, 0, None)

    lost = services.jobs.get(ADMIN, unknown.id)
    assert (lost.state, lost.exit_code, lost.error_type) == (JobState.FAILED, None, "NODE_LOST")
    assert "the server restarted while the job ran" in (lost.message or "")


def test_a_known_failure_found_at_restart_is_retried_as_the_job_allows(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False)
    spec = JobSpec(argv=(PY, "-c", "pass"), max_attempts=2, retry_backoff_s=0)
    job = _ran_in_a_previous_life(services, spec)
    _record_exit(services, job, '{"exit-code": 1}', services.clock.now())
    assert services.dispatcher is not None
    services.dispatcher.start()
    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).is_terminal and j, 30)
    assert (done.state, done.attempt, done.exit_code) == (JobState.SUCCEEDED, 2, 0)


def test_an_attempt_does_not_inherit_a_stale_exit_status(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    job, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "import time; time.sleep(60)")))
    stale = Workspace(services.settings.data_dir).exit_status_path(job.id, 1)
    stale.parent.mkdir(parents=True)
    stale.write_text('{"exit-code": 9}')  # left by an earlier life of this data directory
    assert services.dispatcher is not None
    services.dispatcher.start()
    wait_for(lambda: services.jobs.get(ADMIN, job.id).state is JobState.RUNNING)
    # gone, or the running attempt's own file (a sandbox opens it at the start)
    assert not stale.exists() or parse_exit_code(stale.read_text()) is None
    services.jobs.cancel(ADMIN, job.id, force=True)


def test_exit_status_files_are_read_robustly() -> None:
    assert parse_exit_code('{"exit-code": 3}') == 3
    assert parse_exit_code('{ "child-pid": 12 }\n{ "exit-code": 3 }\n') == 3
    assert parse_exit_code('{"exit-code": 1}{"exit-code": -9}') == -9  # the last one wins
    assert parse_exit_code('{ "child-pid": 12 }\n{ "exit-co') is None  # torn before the code
    assert parse_exit_code('{"exit-code": 2}\n{ "exit-co') == 2  # a torn later object
    assert parse_exit_code('junk {"exit-code": 4} junk') == 4
    assert parse_exit_code('{"exit-code": true}') is None
    assert parse_exit_code('{"exit-code": "3"}') is None
    assert parse_exit_code("") is None
    assert parse_exit_code("[1, 2]") is None
