"""Timeline reads for event streams: a tenant's events after a ``seq``, with filters."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa

from jobyard.domain.jobs import JobEvent
from jobyard.store.database import Database
from jobyard.store.tables import job_events, jobs


def event_from_row(row: Mapping[Any, Any]) -> JobEvent:
    return JobEvent(
        seq=row["seq"],
        job_id=row["job_id"],
        at=row["at"],
        kind=row["kind"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        message=row["message"],
        data=row["data"] or {},
    )


class EventStore:
    """Reads of ``job_events`` across a tenant's jobs, always scoped by ``tenant_id``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def after(
        self,
        tenant_id: str,
        after: int,
        *,
        limit: int,
        job_ids: Collection[str] = (),
        kinds: Collection[str] = (),
        to_states: Collection[str] = (),
        job_states: Collection[str] = (),
        priorities: Collection[str] = (),
        job_types: Collection[str] = (),
    ) -> list[JobEvent]:
        """The tenant's events with ``seq > after``, oldest first, at most ``limit``.

        Every non-empty collection is a filter (any of its values matches); ``job_states``,
        ``priorities`` and ``job_types`` look at the job as it is now."""
        cond: list[Any] = [job_events.c.tenant_id == tenant_id, job_events.c.seq > after]
        for column, values in (
            (job_events.c.job_id, job_ids),
            (job_events.c.kind, kinds),
            (job_events.c.to_state, to_states),
        ):
            if values:
                cond.append(column.in_(sorted(values)))
        source: Any = job_events
        if job_states or priorities or job_types:
            source = job_events.join(jobs, jobs.c.id == job_events.c.job_id)
            cond.append(jobs.c.tenant_id == tenant_id)
            for column, values in (
                (jobs.c.state, job_states),
                (jobs.c.priority, priorities),
                (jobs.c.job_type, job_types),
            ):
                if values:
                    cond.append(column.in_(sorted(values)))
        stmt = (
            sa.select(job_events)
            .select_from(source)
            .where(*cond)
            .order_by(job_events.c.seq)
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [event_from_row(r) for r in rows]

    def last_seq(self, tenant_id: str) -> int:
        """The ``seq`` of the tenant's newest event (0 when it has none)."""
        stmt = (
            sa.select(job_events.c.seq)
            .where(job_events.c.tenant_id == tenant_id)
            .order_by(job_events.c.seq.desc())
            .limit(1)
        )
        with self.db.read() as conn:
            seq = conn.execute(stmt).scalar()
        return int(seq or 0)
