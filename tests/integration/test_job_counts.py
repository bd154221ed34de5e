"""``summary.by_status`` of ``GET /v1/jobs`` comes from ``job_counts`` (kept by triggers)
when only the project, priority and job type narrow the list: it must agree with the jobs
themselves after every kind of change (submit, run, fail, retry, cancel, delete) and per
project."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from jobyard import Client
from jobyard.domain.jobs import JobFilter, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.jobs import JobStore, NewJob, _insert_many
from jobyard.store.tables import job_counts, jobs, tenants
from tests.conftest import LiveServer, ServicesFactory

LATER = datetime.now(UTC) + timedelta(days=365)


def _statuses(c: Client, **filters: str) -> dict[str, int]:
    """Counts by status of the listed jobs themselves (not of the summary)."""
    return dict(Counter(j.status for j in c.iter_jobs(limit=100, **filters)))


def _plain_row(job_id: str, now: datetime) -> dict[str, object]:
    """A queued job's row of tenant "t", for an INSERT of its own (not the store's)."""
    return {
        "id": job_id,
        "tenant_id": "t",
        "priority": "normal",
        "parameters": {},
        "metadata": {},
        "env": {},
        "state": "queued",
        "sort_key": 0.0,
        "created_at": now,
        "updated_at": now,
    }


def test_summary_counts_follow_every_change(live: LiveServer) -> None:
    with live.client() as c:
        ok = [c.submit("true", job_type="ok") for _ in range(3)]
        bad = c.submit("false", job_type="bad", priority="high", max_attempts=2, retry_backoff_s=0)
        waiting = [c.submit("true", scheduled_at=LATER) for _ in range(2)]
        for job in [*ok, bad]:
            c.wait(job.id, poll_interval=0.02)
        c.cancel(waiting[0].id)
        deleted = httpx.delete(
            f"{live.url}/api/jobs/{ok[0].id}",
            headers={"Authorization": f"Bearer {live.admin_key}"},
        )
        assert deleted.status_code == 200, deleted.text

        expected = {"succeeded": 2, "failed": 1, "cancelled": 1, "scheduled": 1}
        assert _statuses(c) == expected
        summary = c.list(status="failed", limit=1).summary
        assert summary.by_status == expected and summary.total == 5
        assert c.list(priority="high").summary.by_status == {"failed": 1}
        assert c.list(priority="normal", status="failed").summary.by_status == {
            "succeeded": 2,
            "cancelled": 1,
            "scheduled": 1,
        }
        assert c.list(job_type="ok").summary.by_status == {"succeeded": 2}
        assert c.list(job_type="bad", priority="high").summary.by_status == {"failed": 1}
        # other filters count the matching jobs instead
        assert c.list(submitted_by="tester", job_type="ok").summary.by_status == {"succeeded": 2}
        assert c.list(submitted_by="nobody").summary.by_status == {}


def test_summary_counts_per_project(live: LiveServer) -> None:
    with live.client() as sup:
        sup.create_project("team-a")
        scoped = sup.create_key("team-a-bot", "member", project="team-a")["secret"]
        sup.submit("true", scheduled_at=LATER)
    with live.client(scoped) as team:
        mine = team.submit("true", scheduled_at=LATER)
        team.cancel(mine.id)
        team.submit("true", scheduled_at=LATER)
        assert team.list().summary.by_status == {"scheduled": 1, "cancelled": 1}
    with live.client() as sup:
        assert sup.list().summary.by_status == {"scheduled": 2, "cancelled": 1}


def test_migration_counts_existing_jobs(tmp_path: Path) -> None:
    """0006 fills ``job_counts`` from the jobs already there; the triggers then keep it."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate.upgrade(db, "0005")
        now = datetime.now(UTC)
        with db.write() as conn:
            conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
            conn.execute(
                jobs.insert(),
                [
                    {
                        "id": f"job-{i}",
                        "tenant_id": "t",
                        "priority": "high" if i % 3 == 0 else "normal",
                        "job_type": "etl" if i < 4 else None,
                        "parameters": {},
                        "metadata": {},
                        "env": {},
                        "state": "succeeded" if i % 2 else "queued",
                        "sort_key": 0.0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(10)
                ],
            )
        migrate.upgrade(db)
        with db.write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == "job-0").values(state="cancelled"))
        store = JobStore(db)
        assert store.count_by_state("t", JobFilter()) == {
            "queued": 4,
            "succeeded": 5,
            "cancelled": 1,
        }
        high = JobFilter(priorities=frozenset({Priority.HIGH}))
        assert store.count_by_state("t", high) == {"queued": 1, "succeeded": 2, "cancelled": 1}
        etl = JobFilter(job_type="etl")
        assert store.count_by_state("t", etl) == {"queued": 1, "succeeded": 2, "cancelled": 1}
    finally:
        db.dispose()


def test_writers_do_not_wait_for_each_other_on_counters(db_url: str) -> None:
    """PostgreSQL: while one transaction holds the counter row of a key, another adds to
    the same key at once (a lock wait would hit ``lock_timeout`` and fail)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time")
    db = Database(db_url)
    now = datetime.now(UTC)

    def job(i: int) -> dict[str, object]:
        return _plain_row(f"job-{i}", now)

    try:
        with db.write() as conn:
            conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
            conn.execute(jobs.insert().values(job(0)))  # the key's first counter row
        with db.engine.connect() as first, db.engine.connect() as second:
            with first.begin():
                first.execute(jobs.insert().values(job(1)))  # holds that row
                with second.begin():
                    second.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                    second.execute(jobs.insert().values(job(2)))
                    second.execute(jobs.update().where(jobs.c.id == "job-0").values(state="failed"))
        assert JobStore(db).count_by_state("t", JobFilter()) == {"queued": 2, "failed": 1}
    finally:
        db.dispose()


def _kept_counts(db: Database) -> dict[tuple[str, ...], int]:
    """``job_counts`` summed over shards, without zeros."""
    k = job_counts.c
    key = (k.tenant_id, k.project_id, k.state, k.priority, k.job_type)
    with db.read() as conn:
        rows = conn.execute(sa.select(*key, sa.func.sum(k.n)).group_by(*key)).all()
    return {tuple(r[:5]): int(r[5]) for r in rows if r[5]}


def _counted_jobs(db: Database) -> dict[tuple[str, ...], int]:
    """The same counts, of the jobs themselves."""
    j = jobs.c
    key = (j.tenant_id, j.project_id, j.state, j.priority, sa.func.coalesce(j.job_type, ""))
    with db.read() as conn:
        rows = conn.execute(sa.select(*key, sa.func.count()).group_by(*key)).all()
    return {tuple(r[:5]): int(r[5]) for r in rows}


def _assert_exact(db: Database) -> None:
    assert _kept_counts(db) == _counted_jobs(db)


def test_a_batch_counts_its_jobs_once_per_key(live: LiveServer) -> None:
    """A batch's counts are exact, for every key, with jobs skipped for their key or invalid left out; the jobs' later changes
    are counted by the triggers, and single submits in between too."""
    with live.client() as sup:
        sup.create_project("team-a")
        scoped = sup.create_key("team-a-bot", "member", project="team-a")["secret"]
        sup.submit("true", scheduled_at=LATER, idempotency_key="taken")
        later = LATER.isoformat()
        batch = sup.submit_batch(
            [
                {"entrypoint": "true", "scheduled_at": later, "job_type": "etl"},
                {"entrypoint": "true", "scheduled_at": later, "job_type": "etl"},
                {"entrypoint": "true", "scheduled_at": later, "priority": "high"},
                {"entrypoint": "true", "scheduled_at": later, "submission_id": "taken"},
                {"entrypoint": "true", "scheduled_at": later, "submission_id": "k"},
                {"entrypoint": "true", "scheduled_at": later, "submission_id": "k"},
                {"entrypoint": "true", "priority": "urgent"},
                {"entrypoint": "true", "job_type": "run"},
                {"entrypoint": "false", "job_type": "run", "priority": "low"},
            ]
        )
        assert (batch.created, batch.existing, batch.failed) == (6, 2, 1)
        for item in batch.items[7:]:
            assert item.id is not None
            sup.wait(item.id, poll_interval=0.02)
        sup.cancel(batch.items[0].id or "")
    with live.client(scoped) as team:
        team.submit_batch([{"entrypoint": "true", "scheduled_at": LATER.isoformat()}] * 3)
        team.submit("true", scheduled_at=LATER)
        assert team.list().summary.by_status == {"scheduled": 4}
    with live.client() as sup:
        expected = {"scheduled": 8, "cancelled": 1, "succeeded": 1, "failed": 1}  # both projects
        assert _statuses(sup) == expected
        assert sup.list(status="failed").summary.by_status == expected
        assert sup.list(job_type="etl").summary.by_status == {"scheduled": 1, "cancelled": 1}
    _assert_exact(live.services.db)


def test_inserts_sharing_a_transaction_are_counted_once(db_url: str) -> None:
    """In one transaction (a group commit), single inserts before and after a batch and
    the batch's jobs are each counted once."""
    db = Database(db_url)
    try:
        migrate.upgrade(db)
        now = datetime.now(UTC)
        with db.write() as conn:
            conn.execute(tenants.insert().values(id="t", name="t", created_at=now))

        def new(job_type: str | None, state: JobState = JobState.QUEUED) -> NewJob:
            spec = JobSpec(entrypoint="true", job_type=job_type)
            return NewJob("t", spec, state, 0.0, now, None, "submitted")

        with db.write() as conn:
            new("a").insert(conn)
            _insert_many(conn, [new("a"), new(None), new("a", JobState.SCHEDULED)])
            new("a").insert(conn)
            new(None, JobState.SCHEDULED).insert(conn)
        with pytest.raises(ZeroDivisionError), db.write() as conn:
            _insert_many(conn, [new("b"), new("b")])
            1 / 0  # noqa: B018  (rolled back: neither the jobs nor their counts stay)
        assert _kept_counts(db) == {
            ("t", "default", "queued", "normal", "a"): 3,
            ("t", "default", "queued", "normal", ""): 1,
            ("t", "default", "scheduled", "normal", "a"): 1,
            ("t", "default", "scheduled", "normal", ""): 1,
        }
        _assert_exact(db)
    finally:
        db.dispose()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _shards(db: Database, table: str) -> dict[int, int]:
    """Rows of ``table`` per shard."""
    with db.read() as conn:
        rows = conn.execute(sa.text(f"SELECT shard, count(*) FROM {table} GROUP BY shard")).all()
    return {int(s): int(n) for s, n in rows}


def test_each_connection_counts_on_rows_of_its_own_folded_once_it_is_gone(
    make_services: ServicesFactory,
) -> None:
    """PostgreSQL (migration 0015): each backend adds to counter rows of its own (shard =
    its process id), in both count tables; the upkeep folds the rows of backends that are
    gone into shard 0, skipping a row a transaction holds (it does not wait for it) until
    a later fold, and the counts stay exact throughout."""
    services = make_services(start=False)
    db = services.db
    if db.dialect != "postgresql":
        pytest.skip("SQLite keeps shard 0 only")
    now = datetime.now(UTC)
    with db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
    with db.engine.connect() as a, db.engine.connect() as b:
        pid_a = a.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        pid_b = b.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        a.commit()
        b.commit()
        with a.begin():
            a.execute(jobs.insert(), [_plain_row(f"job-{i}", now) for i in range(3)])
        with b.begin():
            b.execute(jobs.insert().values(_plain_row("job-3", now)))
            b.execute(jobs.insert().values(_plain_row("job-old", now - timedelta(hours=3))))
            b.execute(jobs.update().where(jobs.c.id == "job-0").values(state="failed"))
        for table in ("job_counts", "job_hour_counts"):
            assert {pid_a, pid_b} <= set(_shards(db, table)), table
        _assert_exact(db)
        # a's connection is gone (its rows now of a pid no backend has)...
        gone = 2_000_000_000  # above any pid (pid_max ≤ 2^22)
        for table in ("job_counts", "job_hour_counts"):
            a.execute(sa.text(f"UPDATE {table} SET shard = {gone} WHERE shard = {pid_a}"))
        a.commit()
        # ... and one of its hour rows is held by a transaction when the upkeep folds
        with db.engine.connect() as holder, holder.begin():
            holder.execute(
                sa.text(f"SELECT 1 FROM job_hour_counts WHERE shard = {gone} FOR UPDATE")
            )
            with db.engine.connect() as other:
                other.execute(sa.text("SET lock_timeout = '5s'"))
                other.execute(sa.text("SELECT job_counts_fold()"))  # a wait would time out
                other.commit()
            assert gone not in _shards(db, "job_counts")
            assert _shards(db, "job_hour_counts")[gone] == 1  # left for a later fold
        _assert_exact(db)
        services.upkeep.tick()
        for table in ("job_counts", "job_hour_counts"):
            shards = _shards(db, table)
            assert gone not in shards and pid_b in shards and 0 in shards, (table, shards)
        # b lives: its rows stay its own, but for hours more than an hour past, folded
        with db.read() as conn:
            hours = conn.execute(
                sa.text(f"SELECT hour FROM job_hour_counts WHERE shard = {pid_b}")
            ).scalars()
            assert {_utc(h) for h in hours} == {now.replace(minute=0, second=0, microsecond=0)}
        _assert_exact(db)
        assert JobStore(db).count_by_state("t", JobFilter()) == {"queued": 4, "failed": 1}
        hour = JobFilter(created_from=now - timedelta(hours=2), created_to=now + timedelta(hours=2))
        assert JobStore(db).count_by_state("t", hour) == {"queued": 3, "failed": 1}
