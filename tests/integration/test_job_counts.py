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
from jobyard.domain.jobs import JobFilter
from jobyard.domain.priorities import Priority
from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.jobs import JobStore
from jobyard.store.tables import jobs, tenants
from tests.conftest import LiveServer

LATER = datetime.now(UTC) + timedelta(days=365)


def _statuses(c: Client, **filters: str) -> dict[str, int]:
    """Counts by status of the listed jobs themselves (not of the summary)."""
    return dict(Counter(j.status for j in c.iter_jobs(limit=100, **filters)))


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
        return {
            "id": f"job-{i}",
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
