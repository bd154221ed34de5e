"""What jobs report while they run (progress, counts, warnings, items), resource
samples, and the record of each attempt."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobyard import errors
from jobyard.domain import states
from jobyard.domain.jobs import Job, ResourceUsage
from jobyard.domain.tracking import Report, column_values, eta
from jobyard.store import fencing
from jobyard.store.database import Database
from jobyard.store.tables import (
    job_attempts,
    job_events,
    job_items,
    job_samples,
    job_warnings,
    jobs,
)

log = logging.getLogger("jobyard.store")

#: a job's warnings, most frequent first (built once: ``GET /v1/jobs/{id}`` reads them)
_WARNINGS = (
    sa.select(job_warnings.c.type, job_warnings.c.count, job_warnings.c.last_message)
    .where(
        job_warnings.c.tenant_id == sa.bindparam("tenant_id"),
        job_warnings.c.job_id == sa.bindparam("job_id"),
    )
    .order_by(job_warnings.c.count.desc(), job_warnings.c.type)
)

#: samples kept per job (older ones are dropped)
MAX_SAMPLES = 360


class TrackingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def token_hash(self, job_id: str) -> tuple[str, str, str | None, int] | None:
        """(tenant id, state, token hash, lease epoch) of a job, for job-token
        authentication (a token belongs to the attempt of that lease epoch)."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(
                    jobs.c.tenant_id, jobs.c.state, jobs.c.job_token_hash, jobs.c.lease_epoch
                ).where(jobs.c.id == job_id)
            ).first()
        return (row[0], row[1], row[2], int(row[3])) if row else None

    def apply(
        self, job_id: str, reports: Sequence[Report], now: datetime, *, epoch: int | None = None
    ) -> int:
        """Apply reports of a running job in one transaction; Conflict once it has ended.
        With ``epoch`` (an attempt's own reports) fenced: StaleState, and nothing
        applied, unless the attempt of that lease epoch still holds the job."""
        with self.db.write() as conn:
            row = fencing.locked_job(conn, job_id)
            if epoch is not None:
                fencing.check(row, job_id, epoch)
            if row is None:
                raise errors.NotFound(f"job {job_id} does not exist")
            if row["state"] not in {s.value for s in states.ACTIVE}:
                raise errors.Conflict(
                    f"job {job_id} is {row['state']}; reports are taken while it runs"
                )
            tenant = row["tenant_id"]
            values: dict[str, Any] = {}
            progress_changed = False
            for r in reports:
                if r.type == "warning":
                    self._warning(conn, tenant, job_id, r, now)
                    values["warning_count"] = values.get("warning_count", row["warning_count"]) + 1
                elif r.type == "item":
                    self._item(conn, tenant, job_id, r, now)
                else:
                    values.update(column_values(r, now))
                    progress_changed = True
            if any(r.type == "item" for r in reports):
                values.update(self._item_counts(conn, job_id))
            if values:
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
            if progress_changed:
                self._progress_event(conn, tenant, job_id, {**dict(row), **values}, now)
        return len(reports)

    @staticmethod
    def _progress_event(
        conn: sa.Connection, tenant: str, job_id: str, merged: Mapping[str, Any], now: datetime
    ) -> None:
        done_at = eta(merged["progress_percent"], merged["started_at"], now)
        conn.execute(
            job_events.insert().values(
                tenant_id=tenant,
                job_id=job_id,
                at=now,
                kind="progress",
                from_state=None,
                to_state=None,
                message=merged["progress_stage"],
                data={
                    "percent": merged["progress_percent"],
                    "stage": merged["progress_stage"],
                    "records_processed": merged["records_processed"],
                    "total_records": merged["total_records"],
                    "errors": merged["error_count"],
                    "warnings": merged["warning_count"],
                    "eta": done_at.isoformat() if done_at else None,
                },
            )
        )

    @staticmethod
    def _warning(conn: sa.Connection, tenant: str, job_id: str, r: Report, now: datetime) -> None:
        key = (job_warnings.c.job_id == job_id, job_warnings.c.type == r.warning_type)
        updated = conn.execute(
            job_warnings.update()
            .where(*key)
            .values(count=job_warnings.c.count + 1, last_message=r.message, updated_at=now)
        )
        if not updated.rowcount:
            conn.execute(
                job_warnings.insert().values(
                    job_id=job_id,
                    type=r.warning_type,
                    tenant_id=tenant,
                    count=1,
                    last_message=r.message,
                    updated_at=now,
                )
            )
        conn.execute(
            job_events.insert().values(
                tenant_id=tenant,
                job_id=job_id,
                at=now,
                kind="warning",
                from_state=None,
                to_state=None,
                message=r.message,
                data={"category": r.warning_type, "message": r.message},
            )
        )

    @staticmethod
    def _item(conn: sa.Connection, tenant: str, job_id: str, r: Report, now: datetime) -> None:
        status = "completed" if r.ok else "failed"
        key = (job_items.c.job_id == job_id, job_items.c.idx == r.index)
        updated = conn.execute(
            job_items.update().where(*key).values(status=status, error=r.error, updated_at=now)
        )
        if not updated.rowcount:
            conn.execute(
                job_items.insert().values(
                    job_id=job_id,
                    idx=r.index,
                    tenant_id=tenant,
                    status=status,
                    error=r.error,
                    updated_at=now,
                )
            )

    @staticmethod
    def _item_counts(conn: sa.Connection, job_id: str) -> dict[str, int]:
        rows = conn.execute(
            sa.select(job_items.c.status, sa.func.count())
            .where(job_items.c.job_id == job_id)
            .group_by(job_items.c.status)
        ).all()
        counts = {s: int(n) for s, n in rows}
        return {
            "items_completed": counts.get("completed", 0),
            "items_failed": counts.get("failed", 0),
        }

    def warnings(self, tenant_id: str, job_id: str) -> list[dict[str, Any]]:
        params = {"tenant_id": tenant_id, "job_id": job_id}
        with self.db.read() as conn:
            return [
                {"type": t, "count": int(c), "message": m}
                for t, c, m in conn.execute(_WARNINGS, params).all()
            ]

    def add_samples(self, samples: Sequence[tuple[Job, ResourceUsage]], now: datetime) -> None:
        """Keep resource samples of attempts; fenced: a sample of an attempt that no
        longer holds its job (``job.lease_epoch``) is dropped."""
        if not samples:
            return
        with self.db.write() as conn:
            for job, u in sorted(samples, key=lambda s: s[0].id):  # rows locked in one order
                try:
                    fencing.hold(conn, job.id, job.lease_epoch)
                except errors.StaleState as e:
                    log.info("sample dropped: %s", e)
                    continue
                conn.execute(
                    job_samples.insert().values(
                        tenant_id=job.tenant_id,
                        job_id=job.id,
                        at=now,
                        cpu_percent=u.cpu_percent,
                        rss_bytes=u.rss_bytes,
                        disk_bytes=u.disk_bytes,
                        io_read_ops=u.io_read_ops,
                        io_write_ops=u.io_write_ops,
                    )
                )
                oldest = (
                    sa.select(job_samples.c.seq)
                    .where(job_samples.c.job_id == job.id)
                    .order_by(job_samples.c.seq.desc())
                    .offset(MAX_SAMPLES)
                    .limit(1)
                    .scalar_subquery()
                )
                conn.execute(
                    job_samples.delete().where(
                        job_samples.c.job_id == job.id, job_samples.c.seq <= oldest
                    )
                )

    def samples(self, tenant_id: str, job_id: str) -> list[Mapping[str, Any]]:
        stmt = (
            sa.select(job_samples)
            .where(job_samples.c.tenant_id == tenant_id, job_samples.c.job_id == job_id)
            .order_by(job_samples.c.seq)
        )
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]

    @staticmethod
    def record_attempt(
        conn: sa.Connection,
        job: Job,
        *,
        state: str,
        ended_at: datetime,
        exit_code: int | None,
        error_type: str | None,
        message: str | None,
    ) -> None:
        """Keep the outcome of the job's current attempt (in the transaction that ends it)."""
        if job.attempt <= 0:
            return
        exists = conn.execute(
            sa.select(job_attempts.c.seq).where(
                job_attempts.c.job_id == job.id, job_attempts.c.attempt == job.attempt
            )
        ).first()
        if exists is None:
            conn.execute(
                job_attempts.insert().values(
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    attempt=job.attempt,
                    node_id=job.node_id,
                    state=state,
                    started_at=job.started_at,
                    ended_at=ended_at,
                    exit_code=exit_code,
                    error_type=error_type,
                    message=message,
                )
            )

    def attempts(self, tenant_id: str, job_id: str) -> list[Mapping[str, Any]]:
        stmt = (
            sa.select(job_attempts)
            .where(job_attempts.c.tenant_id == tenant_id, job_attempts.c.job_id == job_id)
            .order_by(job_attempts.c.attempt)
        )
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]
