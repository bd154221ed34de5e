"""Queue order, aging, capacity, concurrent claims and leases, on both databases."""

from __future__ import annotations

import sys
import threading
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from jobyard import errors
from jobyard.clock import ManualClock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.store.claims import ClaimStore
from jobyard.store.database import Database
from tests.conftest import GATES, ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def _run_order(services, ids: list[str]) -> list[str]:
    """The ids in the order the dispatcher claimed them (event order, not clock time)."""
    for i in ids:
        wait_for(partial(_ended, services, i), timeout=30)
    claimed = {
        i: next(e.seq for e in services.jobs.events(ADMIN, i) if e.to_state == "starting")
        for i in ids
    }
    return sorted(ids, key=claimed.__getitem__)


def _ended(services, job_id: str):
    job = services.jobs.get(ADMIN, job_id)
    return job if job.is_terminal else None


def _submit(services, priority: str, name: str = "", **kw):
    spec = JobSpec(argv=(PY, "-c", "pass"), priority=Priority(priority), name=name, **kw)
    return services.jobs.submit(ADMIN, spec)[0]


def test_priority_order(make_services: ServicesFactory) -> None:
    services = make_services(start=False, slots=1)
    low = _submit(services, "low")
    normal = _submit(services, "normal")
    critical = _submit(services, "critical")
    high = _submit(services, "high")
    normal2 = _submit(services, "normal")
    reason = services.insight.pending_reason(services.jobs.get(ADMIN, low.id))
    assert reason == "priority: 4 job(s) ahead in the queue"
    assert services.dispatcher is not None
    services.dispatcher.start()
    order = _run_order(services, [low.id, normal.id, critical.id, high.id, normal2.id])
    assert order == [critical.id, high.id, normal.id, normal2.id, low.id]


def test_aging_lets_old_low_priority_jobs_run_first(make_services: ServicesFactory) -> None:
    clock = ManualClock()
    services = make_services(start=False, slots=1, clock=clock, aging_step_s=10.0)
    low = _submit(services, "low")  # key T0
    clock.advance(5)
    high = _submit(services, "high")  # key T0+5-20: younger but far more urgent
    clock.advance(36)
    critical = _submit(services, "critical")  # key T0+41-30: the low job has waited long enough
    assert services.dispatcher is not None
    services.dispatcher.start()
    assert _run_order(services, [low.id, high.id, critical.id]) == [high.id, low.id, critical.id]


def test_capacity_limits_running_jobs(make_services: ServicesFactory, tmp_path: Path) -> None:
    services = make_services(slots=2)
    barrier = tmp_path / GATES / "release"
    code = f"import os,time\nwhile not os.path.exists({str(barrier)!r}): time.sleep(0.02)"
    ids = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", code)))[0].id for _ in range(3)]
    wait_for(lambda: sum(services.jobs.get(ADMIN, i).state is JobState.RUNNING for i in ids) == 2)
    states = [services.jobs.get(ADMIN, i).state for i in ids]
    assert states.count(JobState.QUEUED) == 1
    waiting = next(
        services.jobs.get(ADMIN, i) for i in ids if states[ids.index(i)] is JobState.QUEUED
    )
    reason = services.insight.pending_reason(waiting)
    assert reason is not None and reason.startswith("capacity: all 2 slots")
    assert services.dispatcher is not None and services.dispatcher.running_count() == 2
    barrier.touch()
    for i in ids:
        assert wait_for(partial(_ended, services, i)).state is JobState.SUCCEEDED


def test_job_queued_on_a_full_node_starts_when_a_slot_frees(
    make_services: ServicesFactory, tmp_path: Path
) -> None:
    """A submit to a node whose slots are all taken does not wake its claim loop: the
    step that frees a slot claims the job. With a poll interval of an hour, a lost
    wake-up would leave the job queued."""
    services = make_services(slots=1, poll_interval_s=3600)
    barrier = tmp_path / GATES / "release"
    code = f"import os,time\nwhile not os.path.exists({str(barrier)!r}): time.sleep(0.02)"
    first = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", code)))[0]
    wait_for(lambda: services.jobs.get(ADMIN, first.id).state is JobState.RUNNING)
    waiting = [_submit(services, "normal") for _ in range(3)]
    assert all(services.jobs.get(ADMIN, j.id).state is JobState.QUEUED for j in waiting)
    barrier.touch()
    for job in [first, *waiting]:
        assert wait_for(partial(_ended, services, job.id)).state is JobState.SUCCEEDED


def test_concurrent_claims_never_start_a_job_twice(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    n = 60
    for _ in range(n):
        _submit(services, "normal")
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        db = Database(services.db.url)
        store = ClaimStore(db)
        try:
            while True:
                job = store.claim_next(node_id=f"n{k}", now=services.clock.now(), lease_ttl_s=30)
                if job is None:
                    return
                with lock:
                    claimed.append(job.id)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claimed) == n
    assert len(set(claimed)) == n
    for job_id in claimed:
        job = services.jobs.get(ADMIN, job_id)
        assert (job.state, job.attempt, job.lease_epoch) == (JobState.STARTING, 1, 1)
        events = services.jobs.events(ADMIN, job_id)
        assert [e.to_state for e in events] == ["queued", "starting"]


def test_expired_lease_fails_job_and_fences_the_old_owner(make_services: ServicesFactory) -> None:
    clock = ManualClock()
    services = make_services(start=False, clock=clock, lease_ttl_s=7.0)
    job = _submit(services, "normal")
    store = services.jobs.store
    claims = ClaimStore(services.db)
    claimed = claims.claim_next(node_id="dead-node", now=clock.now(), lease_ttl_s=5.0)
    assert claimed is not None and claimed.id == job.id
    running = store.transition(claimed, JobState.RUNNING, now=clock.now(), message="run", epoch=1)
    assert services.dispatcher is not None
    services.dispatcher.reap_expired()
    assert services.jobs.get(ADMIN, job.id).state is JobState.RUNNING  # lease still valid
    clock.advance(6)
    services.dispatcher.reap_expired()
    lost = services.jobs.get(ADMIN, job.id)
    assert lost.state is JobState.FAILED
    assert lost.error_type == "NODE_LOST"
    assert lost.message == (
        "The node running this job (dead-node) stopped renewing its lease"
        " (it died or lost the database)."
    )
    # the old owner comes back: its heartbeat and its completion are refused
    held = claims.renew_leases(
        node_id="dead-node", leases=[(job.id, 1)], expires_at=clock.now() + timedelta(seconds=5)
    )
    assert held == {}
    with pytest.raises(errors.StaleState):
        store.transition(running, JobState.SUCCEEDED, now=clock.now(), message="late", epoch=1)
    assert services.jobs.get(ADMIN, job.id).state is JobState.FAILED


def test_a_queued_submit_notifies_the_listening_nodes(
    make_services: ServicesFactory, db_url: str
) -> None:
    # PostgreSQL nodes wake up on NOTIFY (the job and its event are inserted by one
    # statement that also notifies); SQLite has no other process to wake
    if not db_url.startswith("postgresql"):
        pytest.skip("notifications are PostgreSQL's; a SQLite node wakes itself")
    import psycopg

    services = make_services(start=False)
    dsn = services.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN jobyard_queue")
        later = services.clock.now() + timedelta(days=1)
        services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass"), scheduled_at=later))
        queued, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))
        heard = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in heard] == ["jobyard_queue"]
    assert services.jobs.get(ADMIN, queued.id).state is JobState.QUEUED
    events = services.jobs.events(ADMIN, queued.id)
    assert [(e.from_state, e.to_state) for e in events] == [(None, "queued")]
