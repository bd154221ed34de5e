"""A step that only claims commits without waiting for the disk (SQLite's WAL frames
written, synced on a thread meanwhile); the claimed job's process starts only once that
sync is done. Running marks and ends are still synced before their step returns."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from jobyard import errors
from jobyard.dispatch.attempt import Attempt
from jobyard.domain.auth import Principal, Role, job_token, new_token_secret
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import TERMINAL, JobState
from jobyard.executors.base import Handle, LaunchSpec
from jobyard.store.claims import AttemptEnd, ClaimRequest, ClaimStore, Started
from jobyard.store.database import Database
from tests.conftest import ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)
REQUEST = ClaimRequest(node_id="n1", lease_ttl_s=30, max_slots=1, token_hashes=("h",))


def _trace(db: Database) -> list[tuple[int, str]]:
    """The statements SQLite runs from now on, with the id of their connection."""
    seen: list[tuple[int, str]] = []

    @event.listens_for(db.engine, "connect")
    def trace(dbapi_conn: Any, _record: Any) -> None:
        key = id(dbapi_conn)
        dbapi_conn.set_trace_callback(lambda sql: seen.append((key, sql)))

    db.engine.dispose()  # the pooled connections were opened untraced
    return seen


def _commit_modes(statements: list[tuple[int, str]]) -> list[str]:
    """The ``synchronous`` level each COMMIT ran with (FULL: the connection's default)."""
    level: dict[int, str] = {}
    modes = []
    for conn, sql in statements:
        if sql.startswith("PRAGMA synchronous="):
            level[conn] = sql.split("=", 1)[1]
        elif sql == "COMMIT":
            modes.append(level.get(conn, "FULL"))
    return modes


def _spy_syncs(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[str]:
    """The files ``os.fdatasync`` is called on from now on (failing with EIO if told)."""
    synced: list[str] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        if fail:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return synced


def test_only_a_claim_commits_unsynced_and_its_wait_syncs_the_wal(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    if services.db.dialect != "sqlite":
        pytest.skip("PostgreSQL's commits are synced by the server (see the next test)")
    for _ in range(2):
        services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))
    claims = ClaimStore(services.db)
    seen = _trace(services.db)
    synced = _spy_syncs(monkeypatch)
    now = services.clock.now()

    step = claims.step(now=now, claim=REQUEST)
    (claimed,) = step.claimed
    assert _commit_modes(seen) == ["NORMAL"]
    # the claim loop keeps its connection at NORMAL until a step that must be synced
    step.synced()
    assert synced == [str(services.db.file_path.resolve()) + "-wal"]  # type: ignore[union-attr]

    del seen[:], synced[:]
    started = Started(job=claimed, pid=1, create_time=1.0, node_id="n1", started_at=now)
    (running,) = claims.step(now=now, starts=[started]).running
    assert running is not None
    end = AttemptEnd(job=running, target=JobState.SUCCEEDED, message="done", exit_code=0)
    step = claims.step(now=now, ends=[end], claim=REQUEST)  # an end and a claim
    assert step.ended[0].ended is not None and len(step.claimed) == 1
    step.synced()
    assert _commit_modes(seen) == ["FULL", "FULL"]
    assert synced == []  # synced by their own commits

    assert claims.step(now=now, claim=REQUEST).claimed == []  # nothing queued: no sync
    assert synced == []


def test_a_claim_is_on_disk_when_claim_returns(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))
    synced = _spy_syncs(monkeypatch)
    claims = ClaimStore(services.db)
    (job,) = claims.claim(
        node_id="n1", now=services.clock.now(), lease_ttl_s=30, max_slots=1, token_hashes=["h"]
    )
    assert job.state is JobState.STARTING
    if services.db.dialect == "sqlite":
        assert [Path(p).name for p in synced] == [services.db.file_path.name + "-wal"]  # type: ignore[union-attr]
    else:
        assert synced == []


def test_the_process_starts_only_after_the_claim_is_synced(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    assert services.dispatcher is not None
    runner, claims = services.dispatcher.runner, services.dispatcher.claims
    for _ in range(2):
        services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "print('ran')")))
    order: list[str] = []
    real_start = runner.executor.start

    def start(spec: LaunchSpec) -> Handle:
        order.append("start")
        return real_start(spec)

    monkeypatch.setattr(runner.executor, "start", start)

    def synced() -> None:
        order.append("synced")

    first = claims.step(now=services.clock.now(), claim=REQUEST).claimed[0]
    a = Attempt(job=first, token=job_token(first.id, new_token_secret()), claim_synced=synced)
    assert runner.launch(a) is None and a.handle is not None
    assert order == ["synced", "start"]
    assert a.handle.wait(30) == 0

    def unsynced() -> None:
        raise errors.StoreUnavailable("the database's changes could not be written to disk")

    del order[:]
    second = claims.step(now=services.clock.now(), claim=REQUEST).claimed[0]
    b = Attempt(job=second, token=job_token(second.id, new_token_secret()), claim_synced=unsynced)
    end = runner.launch(b)
    assert b.handle is None and order == []  # never started
    assert end is not None and end.target is JobState.FAILED
    assert "could not be written to disk" in end.message


def test_a_job_whose_claim_cannot_be_synced_fails_without_running(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _spy_syncs(monkeypatch, fail=True)
    services = make_services()
    job, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "print('ran')")))
    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).state in TERMINAL and j)
    log = services.logs.read_log(ADMIN, job.id).data
    if services.db.dialect == "sqlite":  # the WAL could not be synced: not started
        assert synced and done.state is JobState.FAILED
        assert "could not be written to disk" in done.message
        assert b"could not be written to disk" in log and b"ran" not in log
    else:  # PostgreSQL's commit was synced by the server: nothing to sync here
        assert synced == [] and done.state is JobState.SUCCEEDED
