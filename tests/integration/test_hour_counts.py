"""``GET /v1/jobs`` by time range and by submitter: the page lists exactly the jobs
created in the range (newest first, across cursors) and ``summary`` counts exactly them,
though the counts sum whole hours of ``job_hour_counts`` (kept by triggers, migration
0014) and the page walks seqs between that table's bounds; before and after the jobs
change (cancel, run, fail, delete), and with jobs inserted out of their hours' order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from jobyard import Client
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import JobState
from jobyard.sdk.models import Job
from jobyard.store.database import Database
from jobyard.store.jobs import NewJob, _insert_many
from jobyard.store.tables import HOUR_STATES, job_hour_counts, jobs
from tests.conftest import LiveServer

BASE = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATER = datetime.now(UTC) + timedelta(days=365)
_S = timedelta(seconds=1)
_US = timedelta(microseconds=1)

#: (minutes after BASE, submitter): the jobs of 10:00–15:00, inserted in this order
MINUTES = [
    (0, "alice"),
    (5, "bob"),
    (59, None),
    (60, "alice"),
    (61, "alice"),
    (90, "bob"),
    (120, "alice"),
    (150, None),
    (179.99, "bob"),
    (180, "alice"),
    (239, "bob"),
    (240, "alice"),
    (300, "bob"),
]
#: inserted afterwards: later seqs than newer hours' jobs
LATE = [(30, "bob"), (100, "alice"), (0.5, None)]


def _insert(db: Database, minutes: list[tuple[float, str | None]]) -> None:
    """Scheduled jobs (they never run) created at those times, as a batch and singly."""

    def new(m: float, by: str | None) -> NewJob:
        spec = JobSpec(entrypoint="true", submitted_by=by, scheduled_at=LATER)
        return NewJob(
            "default", spec, JobState.SCHEDULED, 0.0, BASE + timedelta(minutes=m), None, ""
        )

    with db.write() as conn:
        _insert_many(conn, [new(m, by) for m, by in minutes[:-1]])
        new(*minutes[-1]).insert(conn)


def _at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


RANGES: list[dict[str, Any]] = [
    {"created_from": BASE, "created_to": _at(300)},
    {"created_from": BASE, "created_to": _at(120)},  # whole hours, `to` on a boundary
    {"created_from": _at(30), "created_to": _at(150)},  # two partial edge hours
    {"created_from": _at(60) - _US, "created_to": _at(60)},  # across one boundary
    {"created_from": _at(60), "created_to": _at(60)},
    {"created_from": _at(61), "created_to": _at(119)},  # within one hour
    {"created_to": _at(120) - _US},
    {"created_to": _at(90)},
    {"created_from": _at(100) + _S},
    {"created_from": _at(180)},
    {"created_from": _at(180), "created_to": _at(60)},  # empty
    {"created_from": datetime(2000, 1, 1, tzinfo=UTC), "created_to": BASE - _US},  # empty
]
FILTERS: list[dict[str, Any]] = [
    *RANGES,
    *({**r, "submitted_by": "alice"} for r in RANGES[:8]),
    *({**r, "submitted_by": "bob", "status": "scheduled"} for r in RANGES[2:6]),
    {"submitted_by": "alice"},
    {"submitted_by": "bob", "status": "cancelled"},
    {"submitted_by": "tester"},
    {"submitted_by": "nobody"},
    {"created_from": BASE, "created_to": _at(300), "priority": "normal"},  # counted by jobs
]


def _matches(job: Job, flt: dict[str, Any]) -> bool:
    assert job.created_at is not None
    return (
        job.created_at >= flt.get("created_from", datetime.min.replace(tzinfo=UTC))
        and job.created_at <= flt.get("created_to", datetime.max.replace(tzinfo=UTC))
        and flt.get("submitted_by", job.submitted_by) == job.submitted_by
        and flt.get("priority", job.priority) == job.priority
    )


def _check_every_filter(c: Client) -> None:
    every = list(c.iter_jobs(limit=100))
    for flt in FILTERS:
        expected = [j for j in every if _matches(j, flt)]
        by_status = dict(Counter(j.status for j in expected))
        listed = [j for j in expected if flt.get("status", j.status) == j.status]
        got = [j.id for j in c.iter_jobs(limit=3, **flt)]  # small pages: cursors too
        assert got == [j.id for j in listed], flt
        summary = c.list(limit=1, **flt).summary
        assert (summary.by_status, summary.total) == (by_status, len(expected)), flt


def _kept(db: Database) -> dict[tuple[Any, ...], int]:
    """``job_hour_counts`` summed over shards by key and state, without zeros."""
    k = job_hour_counts.c
    key = (k.tenant_id, k.hour, k.project_id, k.submitted_by)
    sums = [sa.func.sum(k[s]) for s in HOUR_STATES]
    with db.read() as conn:
        rows = conn.execute(sa.select(*key, *sums).group_by(*key)).all()
    return {(*r[:4], s): int(n) for r in rows for s, n in zip(HOUR_STATES, r[4:], strict=True) if n}


def _counted(db: Database) -> dict[tuple[Any, ...], int]:
    """The same counts, of the jobs themselves (the hour taken in Python)."""
    j = jobs.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(j.tenant_id, j.created_at, j.project_id, j.submitted_by, j.state)
        ).all()
    hour = lambda at: at.replace(minute=0, second=0, microsecond=0)  # noqa: E731
    return dict(Counter((t, hour(at), p, by or "", s) for t, at, p, by, s in rows))


def test_time_ranges_and_submitters_list_and_count_exactly(live: LiveServer) -> None:
    db = live.services.db
    _insert(db, MINUTES)
    _insert(db, LATE)
    with live.client() as c:
        ran = [c.submit("true"), c.submit("false")]  # created now, submitted_by "tester"
        for job in ran:
            c.wait(job.id, poll_interval=0.02)
        _check_every_filter(c)
        assert _kept(db) == _counted(db)

        # changes: cancels in several hours, a retry's run, a delete
        listed = list(c.iter_jobs(limit=100, created_from=BASE, created_to=_at(300)))
        for job in listed[::3]:
            c.cancel(job.id)
        again = c.submit("false", max_attempts=2, retry_backoff_s=0)
        c.wait(again.id, poll_interval=0.02)
        deleted = httpx.delete(
            f"{live.url}/api/jobs/{ran[0].id}",
            headers={"Authorization": f"Bearer {live.admin_key}"},
        )
        assert deleted.status_code == 200, deleted.text
        _check_every_filter(c)
    assert _kept(db) == _counted(db)


def test_a_job_moved_to_another_hour_or_submitter_is_counted_there(live: LiveServer) -> None:
    """No route changes a job's creation time or submitter, but the triggers follow such
    a change as they follow a change of state."""
    db = live.services.db
    _insert(db, MINUTES)
    with db.write() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.submitted_by == "bob")
            .values(created_at=_at(400), submitted_by="carol", state="cancelled")
        )
        conn.execute(jobs.update().where(jobs.c.submitted_by == "alice").values(created_at=_at(1)))
    assert _kept(db) == _counted(db)
    with live.client() as c:
        page = c.list(created_from=_at(400), created_to=_at(400), submitted_by="carol")
        assert page.summary.by_status == {"cancelled": 5}
        assert c.list(created_from=BASE, created_to=_at(59)).summary.by_status == {"scheduled": 7}


def test_every_state_has_its_counter_column() -> None:
    """A new state needs its column in ``job_hour_counts`` (a migration), or the hour
    counts would leave its jobs out."""
    assert HOUR_STATES == tuple(s.value for s in JobState)
