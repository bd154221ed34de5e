"""Notification deliveries: which ended jobs still need notifying, the delivery rows,
their claims by a sender and the outcome of each attempt."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobyard.domain import states
from jobyard.domain.jobs import Job
from jobyard.store import dialects
from jobyard.store.database import Database
from jobyard.store.jobs import job_from_row
from jobyard.store.tables import jobs, notification_deliveries

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

_nd = notification_deliveries
_TERMINAL = sorted(s.value for s in states.TERMINAL)


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One notification of one job to one target (a webhook URL or an email address)."""

    id: str
    tenant_id: str
    job_id: str
    channel: str  #: "webhook" | "email"
    target: str
    event: str  #: "job.succeeded", "job.failed", …
    status: str  #: pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    response_status: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


def _delivery(row: Mapping[Any, Any]) -> Delivery:
    return Delivery(**{k: row[k] for k in Delivery.__dataclass_fields__})


def _has_notifications() -> sa.ColumnElement[bool]:
    # JSON columns keep Python None as the JSON text 'null', not SQL NULL
    return sa.and_(
        jobs.c.notifications.is_not(None), sa.cast(jobs.c.notifications, sa.Text) != "null"
    )


def _unnotified_ended() -> list[sa.ColumnElement[bool]]:
    # ended_at: the partial index ix_jobs_unnotified holds only ended jobs
    return [jobs.c.notified_at.is_(None), jobs.c.ended_at.is_not(None), jobs.c.state.in_(_TERMINAL)]


# Built once: constructing these (and their cache keys) took most of a round's ≈ 5 ms
#: the unnotified ended jobs and whether each has a notification spec
_UNNOTIFIED = (
    sa.select(jobs.c.id, _has_notifications())
    .where(*_unnotified_ended())
    .order_by(jobs.c.seq)
    .limit(sa.bindparam("limit"))
)
_TO_NOTIFY = (
    sa.select(jobs)
    .where(*_unnotified_ended(), _has_notifications())
    .order_by(jobs.c.seq)
    .limit(sa.bindparam("limit"))
)
_SILENT = (
    sa.select(jobs.c.id)
    .where(*_unnotified_ended(), sa.not_(_has_notifications()))
    .limit(sa.bindparam("limit"))
)
#: whether any delivery is due (``now``)
_DUE_PROBE = (
    sa.select(_nd.c.id)
    .where(
        _nd.c.status == PENDING,
        _nd.c.next_attempt_at <= sa.bindparam("now", type_=_nd.c.next_attempt_at.type),
    )
    .limit(1)
)
_MARK = (
    jobs.update()
    .where(jobs.c.id.in_(sa.bindparam("ids", expanding=True)), *_unnotified_ended())
    .values(notified_at=sa.bindparam("now", type_=jobs.c.notified_at.type))
)


class NotificationStore:
    """All SQL about notifications."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- planning ----------------------------------------------------------------
    def ends_committed(self) -> int:
        """How many commits of this process ended jobs so far (it changes after each)."""
        return self.db.ended_commits

    def jobs_to_notify(self, limit: int = 100) -> list[Job]:
        """Ended jobs (all tenants) with a notification spec not yet planned."""
        with self.db.read() as conn:
            rows = conn.execute(_TO_NOTIFY, {"limit": limit}).mappings().all()
        return [job_from_row(r) for r in rows]

    def unnotified(self, limit: int = 500) -> tuple[list[str], bool]:
        """The first ``limit`` ended jobs not yet notified (nor marked): the ids of those
        without a notification spec, and whether any job may have one (one of these,
        or one beyond them)."""
        with self.db.read() as conn:
            rows = conn.execute(_UNNOTIFIED, {"limit": limit}).all()
        return [r[0] for r in rows if not r[1]], len(rows) >= limit or any(r[1] for r in rows)

    def mark_silent(self, now: datetime, limit: int = 500, ids: Sequence[str] | None = None) -> int:
        """Mark ended jobs without a notification spec as done, so the "not yet
        notified" set (index ``ix_jobs_unnotified``) stays small: the first ``limit``
        of them, or those of ``ids`` (from :meth:`unnotified`)."""
        if ids is None:
            with self.db.read() as conn:
                ids = list(conn.execute(_SILENT, {"limit": limit}).scalars())
        if not ids:
            return 0
        # unsynced (SQLite): a mark a power failure undoes is made again by a next round,
        # and the write lock is not held through an fdatasync the claim loop waits for
        with self.db.write(synced=False) as conn:
            result = conn.execute(_MARK, {"ids": list(ids), "now": now})
        return int(result.rowcount)

    def plan(self, job: Job, deliveries: Sequence[Mapping[str, Any]], now: datetime) -> bool:
        """Insert the job's deliveries and set its ``notified_at`` in one transaction,
        only if no one did it before (and the job is still as read). Each delivery gives
        ``channel``, ``target``, ``event`` and ``payload``. False: already planned."""
        with self.db.write() as conn:
            claimed = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == job.id,
                    jobs.c.notified_at.is_(None),
                    jobs.c.state == job.state.value,
                    jobs.c.attempt == job.attempt,
                )
                .values(notified_at=now)
            )
            if claimed.rowcount != 1:
                return False
            rows = [
                {
                    "id": str(uuid.uuid4()),
                    "tenant_id": job.tenant_id,
                    "job_id": job.id,
                    "channel": d["channel"],
                    "target": d["target"],
                    "event": d["event"],
                    "payload": dict(d["payload"]),
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for d in deliveries
            ]
            if rows:
                conn.execute(_nd.insert(), rows)
        return True

    # ---- sending -----------------------------------------------------------------
    def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> list[Delivery]:
        """Pending deliveries whose time has come (all tenants), claimed by moving their
        ``next_attempt_at`` to ``lease_until``: no other sender takes them meanwhile,
        and they come due again if this one dies. The returned ``next_attempt_at`` is the
        lease to pass to :meth:`record_attempt`."""
        with self.db.read() as conn:
            if conn.execute(_DUE_PROBE, {"now": now}).first() is None:
                return []
        due = [_nd.c.status == PENDING, _nd.c.next_attempt_at <= now]
        pick = sa.select(_nd.c.id).where(*due).order_by(_nd.c.next_attempt_at).limit(limit)
        with self.db.write() as conn:
            ids = list(conn.execute(dialects.lock_for_claim(pick, self.db.dialect)).scalars())
            if not ids:
                return []
            rows = (
                conn.execute(
                    _nd.update()
                    .where(_nd.c.id.in_(ids), *due)
                    .values(next_attempt_at=lease_until)
                    .returning(*_nd.c)
                )
                .mappings()
                .all()
            )
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.created_at, d.id))

    def record_attempt(
        self,
        delivery_id: str,
        ok: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
        now: datetime,
        *,
        lease: datetime | None = None,
    ) -> bool:
        """Count one attempt: ``delivered`` when ok, else ``pending`` until
        ``next_attempt_at`` or, without one, ``failed``. With ``lease``, only if the
        claim still holds. The error of the latest failed attempt is kept."""
        values: dict[str, Any] = {
            "attempts": _nd.c.attempts + 1,
            "response_status": status_code,
            "updated_at": now,
        }
        if ok:
            values.update(status=DELIVERED, next_attempt_at=None)
        else:
            status = PENDING if next_attempt_at is not None else FAILED
            values.update(status=status, next_attempt_at=next_attempt_at, last_error=error)
        cond = [_nd.c.id == delivery_id, _nd.c.status == PENDING]
        if lease is not None:
            cond.append(_nd.c.next_attempt_at == lease)
        with self.db.write() as conn:
            return bool(conn.execute(_nd.update().where(*cond).values(**values)).rowcount == 1)

    # ---- reads -------------------------------------------------------------------
    def list_for_job(self, tenant_id: str, job_id: str) -> list[Delivery]:
        stmt = (
            sa.select(_nd)
            .where(_nd.c.tenant_id == tenant_id, _nd.c.job_id == job_id)
            .order_by(_nd.c.created_at, _nd.c.channel, _nd.c.target, _nd.c.id)
        )
        with self.db.read() as conn:
            return [_delivery(r) for r in conn.execute(stmt).mappings().all()]
