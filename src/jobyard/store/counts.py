"""``job_counts`` of new jobs on SQLite: added by the store that inserts them, once per
key of a statement (migration 0013), not by an insert trigger.

On SQLite an ``AFTER INSERT`` trigger costs every inserted row its sub-program, even
with a ``WHEN`` that is false (≈ 2–4 µs of a 1,000-job batch's ≈ 60 µs a job of server
CPU), so :meth:`NewJob.insert <jobyard.store.jobs.NewJob.insert>` and a batch's
insert add their jobs here: one upsert for a single job, one row per (tenant, project,
state, priority, job type) for a batch, in the inserting transaction. Every insert into
``jobs`` goes through ``store/jobs.py``; changes and deletes are still counted by the
triggers. PostgreSQL keeps its insert trigger (a job and its event are one statement).
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from jobyard.store.prepared import driver_cursor

#: (tenant, project, state, priority, job type or '') of a job, as ``job_counts`` keys it
CountKey = tuple[str, str, str, str, str]

_ADD = (
    "INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)"
    " VALUES (?, ?, ?, ?, ?, 0, ?)"
    " ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)"
    " DO UPDATE SET n = n + excluded.n"
)


def counted_by_store(dialect_name: str) -> bool:
    """Whether the store counts the jobs it inserts (SQLite), else the trigger does."""
    return dialect_name == "sqlite"


def add_inserted(conn: sa.Connection, counts: Iterable[tuple[CountKey, int]]) -> None:
    """Add ``counts`` (new jobs by key) to ``job_counts`` in ``conn``'s transaction."""
    params = [(*key, n) for key, n in counts]
    with driver_cursor(conn, _ADD, params) as cursor:
        cursor.executemany(_ADD, params)
