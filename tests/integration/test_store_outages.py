"""Running jobs through database outages: real dispatchers, real subprocess jobs, a real
SQLite file (locked by another connection) or a private PostgreSQL server that the tests
stop and start (``tests/support/private_pg.py``; never the shared server)."""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobyard import errors
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.settings import Settings
from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.wiring import Services, build_services
from tests.conftest import fast_settings, wait_for
from tests.support import private_pg
from tests.support.blackhole import TcpProxy
from tests.support.private_pg import PrivatePostgres

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)
#: the shipped lease settings (the fast test settings fence after 2 s)
DEFAULT_LEASES = {
    "lease_ttl_s": Settings.lease_ttl_s,
    "outage_tolerance_s": Settings.outage_tolerance_s,
}


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PrivatePostgres]:
    reason = private_pg.unavailable()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as pg:
        yield pg


@pytest.fixture
def private_db(pg_server: PrivatePostgres) -> str:
    """A fresh, migrated database on the private server (started if a test left it down)."""
    if not pg_server.accepts():
        pg_server.start()
    url = pg_server.create_database("jobyard")
    db = Database(url)
    upgrade(db)
    db.dispose()
    return url


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., Services]]:
    """Start a services (a node with a dispatcher) on a database URL; closed at teardown."""
    made: list[Services] = []

    def start(url: str, **overrides: Any) -> Services:
        settings = fast_settings(tmp_path / f"data{len(made)}", url, **overrides)
        services = build_services(settings)
        made.append(services)
        services.start()
        return services

    yield start
    for services in reversed(made):
        services.close()


def waits_for_go(code: int) -> tuple[str, ...]:
    """A job that waits for the file ``go`` in its working directory (what a sandboxed
    job sees too: see :func:`go`), says so, and exits with ``code``."""
    return (
        PY,
        "-c",
        "import os, sys, time\n"
        "while not os.path.exists('go'): time.sleep(0.02)\n"
        "print('the job saw go', flush=True)\n"
        f"sys.exit({code})",
    )


def go(services: Services, job: Job) -> None:
    (services.settings.data_dir / "jobs" / job.id / "work" / "go").touch()


def submit(services: Services, argv: tuple[str, ...]) -> Job:
    job, _ = services.jobs.submit(ADMIN, JobSpec(argv=argv))
    return job


def current(services: Services, job_id: str) -> Job | None:
    """The job now, or None while the database does not answer."""
    try:
        return services.jobs.get(ADMIN, job_id)
    except errors.StoreUnavailable:
        return None


def state_of(services: Services, job_id: str) -> JobState | None:
    job = current(services, job_id)
    return None if job is None else job.state


def ended(services: Services, job_id: str, timeout: float = 60) -> Job:
    def done() -> Job | None:
        job = current(services, job_id)
        return job if job is not None and job.is_terminal else None

    found: Job = wait_for(done, timeout=timeout)
    return found


def dispatcher_of(services: Services) -> Any:
    assert services.dispatcher is not None
    return services.dispatcher


# ---- 1. an attempt's outcome is kept until it is written -------------------------------
def test_an_end_blocked_by_a_sqlite_lock_is_written_with_its_exit_code_and_time(
    tmp_path: Path, start_node: Callable[..., Services]
) -> None:
    db_file = tmp_path / "jobyard.db"
    services = start_node(f"sqlite:///{db_file}", **DEFAULT_LEASES)
    job = submit(services, waits_for_go(5))
    wait_for(lambda: state_of(services, job.id) is JobState.RUNNING)
    claim_loop = dispatcher_of(services).claim_loop
    locker = sqlite3.connect(db_file, isolation_level=None, timeout=10)
    locker.execute("BEGIN EXCLUSIVE")  # longer than the busy timeout: every write fails
    try:
        go(services, job)
        # the exit was seen and its end could not be written (the step failed)
        wait_for(lambda: claim_loop.pending_ends() == 1 and claim_loop.paused_for() > 0, 30)
        exited_before = datetime.now(UTC)
        assert state_of(services, job.id) is JobState.RUNNING
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    done = ended(services, job.id)
    assert (done.state, done.exit_code, done.error_type) == (
        JobState.FAILED,
        5,
        "ENTRYPOINT_COMMAND_ERROR",
    )
    assert "the job saw go" in (done.message or "")
    assert done.ended_at is not None and done.ended_at < exited_before  # the exit's time
    assert dispatcher_of(services).running_count() == 0


def test_an_end_while_postgres_is_down_is_written_when_it_is_back(
    tmp_path: Path,
    pg_server: PrivatePostgres,
    private_db: str,
    start_node: Callable[..., Services],
) -> None:
    services = start_node(private_db, **DEFAULT_LEASES)
    job = submit(services, waits_for_go(3))
    wait_for(lambda: state_of(services, job.id) is JobState.RUNNING)
    claim_loop = dispatcher_of(services).claim_loop
    pg_server.stop()
    go(services, job)
    wait_for(lambda: claim_loop.pending_ends() == 1 and claim_loop.paused_for() > 0, 30)
    exited_before = datetime.now(UTC)
    pg_server.start()
    done = ended(services, job.id)
    assert (done.state, done.exit_code, done.error_type) == (
        JobState.FAILED,
        3,
        "ENTRYPOINT_COMMAND_ERROR",
    )
    assert done.ended_at is not None and done.ended_at < exited_before
    assert done.attempt == 1


# ---- 2. a short outage is not a node loss -------------------------------------------------
def test_running_jobs_survive_a_ten_second_postgres_outage(
    tmp_path: Path,
    pg_server: PrivatePostgres,
    private_db: str,
    start_node: Callable[..., Services],
) -> None:
    services = start_node(private_db, **DEFAULT_LEASES)  # the shipped lease settings
    job = submit(services, waits_for_go(0))
    wait_for(lambda: state_of(services, job.id) is JobState.RUNNING)
    supervisor = dispatcher_of(services).supervisor
    pg_server.stop()
    wait_for(lambda: supervisor.store_down_for() >= 10, timeout=40)
    pg_server.start()
    wait_for(lambda: supervisor.store_down_for() == 0, timeout=30)  # renewed again
    go(services, job)
    done = ended(services, job.id)
    assert (done.state, done.exit_code, done.attempt) == (JobState.SUCCEEDED, 0, 1)


def test_a_node_that_loses_postgres_longer_than_its_tolerance_stops_its_jobs(
    tmp_path: Path,
    pg_server: PrivatePostgres,
    private_db: str,
    start_node: Callable[..., Services],
) -> None:
    services = start_node(private_db)  # fast settings: outage_tolerance_s=4, lease_ttl_s=7
    job = submit(services, waits_for_go(0))
    wait_for(lambda: state_of(services, job.id) is JobState.RUNNING)
    attempt = dispatcher_of(services).attempts.get(job.id)
    pid = attempt.handle.pid
    pg_server.stop()
    wait_for(lambda: _gone(pid), timeout=30)  # killed by the node, not by a reaper
    pg_server.start()
    done = ended(services, job.id)
    assert (done.state, done.error_type, done.attempt) == (JobState.FAILED, "NODE_LOST", 1)
    assert re.fullmatch(
        r"The node running this job \(test-node\) could not reach the database for \d+ s"
        r" and stopped its jobs, so that no other node runs them twice\.",
        done.message or "",
    ), done.message


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


#: a job that notes the time every 20 ms in ./ticks until ./go exists
TICKS = (
    PY,
    "-c",
    "import os, time\n"
    "with open('ticks', 'a') as f:\n"
    "    while not os.path.exists('go'):\n"
    "        f.write(f'{time.time()}\\n'); f.flush(); time.sleep(0.02)",
)


def _ticks(services: Services, job: Job) -> list[float]:
    path = services.settings.data_dir / "jobs" / job.id / "work" / "ticks"
    return [float(t) for t in path.read_text().split()] if path.exists() else []


def test_a_partitioned_node_stops_its_job_before_another_node_runs_it_again(
    pg_server: PrivatePostgres, private_db: str, start_node: Callable[..., Services]
) -> None:
    with TcpProxy("127.0.0.1", pg_server.port) as proxy:
        through_proxy = private_db.replace(f":{pg_server.port}/", f":{proxy.port}/")
        a = start_node(through_proxy, node_id="node-a")  # fast settings: tolerance 2 s, TTL 4 s
        job, _ = a.jobs.submit(ADMIN, JobSpec(argv=TICKS, max_attempts=2, retry_backoff_s=0))
        wait_for(lambda: state_of(a, job.id) is JobState.RUNNING and _ticks(a, job))
        b = start_node(private_db, node_id="node-b")
        proxy.blackhole()  # node-a's database calls hang (no error, no answer)

        def retried_on_b() -> Job | None:
            j = current(b, job.id)
            ok = j is not None and j.node_id == "node-b" and j.state is JobState.RUNNING
            return j if ok and _ticks(b, job) else None

        retry = wait_for(retried_on_b, timeout=60)
        assert retry.attempt == 2
        first_on_b = _ticks(b, job)[0]
        last_on_a = _ticks(a, job)[-1]
        assert last_on_a < first_on_b  # never two attempts at once
        assert _gone(dispatcher_of(a).attempts.get(job.id).handle.pid)
        go(b, job)
        assert ended(b, job.id).state is JobState.SUCCEEDED
        proxy.cut()  # node-a reaches the database again; its fenced end changes nothing
        wait_for(lambda: dispatcher_of(a).running_count() == 0, timeout=30)
        final = current(b, job.id)
        assert final is not None and (final.state, final.attempt) == (JobState.SUCCEEDED, 2)


# ---- 6. submits after an outage ---------------------------------------------------------
def test_submits_are_accepted_again_once_postgres_is_back(
    pg_server: PrivatePostgres, private_db: str, start_node: Callable[..., Services]
) -> None:
    """The group-commit writer's held connections (a lone one-statement submit's, and a
    transaction's) broke with the server: a submit answers StoreUnavailable while it is
    down, and the next submits once it is back are stored (no stale connection kept)."""
    services = start_node(private_db, run_dispatcher=False)
    later = datetime(2099, 1, 1, tzinfo=UTC)
    before, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass"), scheduled_at=later))
    pg_server.stop()
    with pytest.raises(errors.StoreUnavailable):
        services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))
    pg_server.start()

    def accepted() -> Job | None:
        try:
            job, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))
        except errors.StoreUnavailable:
            return None  # a connection that broke is replaced on the next call
        return job

    after = wait_for(accepted, timeout=30)
    assert services.jobs.get(ADMIN, after.id).state is JobState.QUEUED
    assert services.jobs.get(ADMIN, before.id).state is JobState.SCHEDULED
