"""The fence of an attempt's writes: every write after the claim runs in a transaction
that first locks the job's row and checks that the attempt still holds the job (its
lease epoch is the job's, and the job has not ended). A write of an attempt whose lease
was lost, or of an earlier attempt after the job was claimed again, is refused with
:class:`~jobyard.errors.StaleState`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from jobyard import errors
from jobyard.domain import states
from jobyard.store import dialects
from jobyard.store.tables import jobs

_ACTIVE = frozenset(s.value for s in states.ACTIVE)


def locked_job(conn: sa.Connection, job_id: str, *columns: Any) -> RowMapping | None:
    """The job's row (``columns``, else all), locked until ``conn``'s transaction ends."""
    stmt = sa.select(*(columns or (jobs,))).where(jobs.c.id == job_id)
    return conn.execute(dialects.lock_row(stmt, conn.dialect.name)).mappings().first()


def check(row: RowMapping | None, job_id: str, epoch: int) -> None:
    """StaleState unless ``row`` (read by :func:`locked_job`) is the active job of the
    attempt of lease ``epoch``."""
    if row is None:
        raise errors.StaleState(f"job {job_id} no longer exists")
    if row["lease_epoch"] != epoch or row["state"] not in _ACTIVE:
        raise errors.StaleState(
            f"job {job_id}: the attempt of lease epoch {epoch} no longer holds the job"
            f" (it is {row['state']}, lease epoch {row['lease_epoch']})",
            current=row["state"],
        )


def hold(conn: sa.Connection, job_id: str, epoch: int) -> None:
    """Lock the job's row and check that the attempt of lease ``epoch`` holds it."""
    check(locked_job(conn, job_id, jobs.c.state, jobs.c.lease_epoch), job_id, epoch)
