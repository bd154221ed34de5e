"""Node rows: each serving process that runs jobs registers and heartbeats here."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc

from jobyard import errors
from jobyard.store.database import Database
from jobyard.store.tables import nodes


class NodeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, *, node_id: str, hostname: str, pid: int, slots: int, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(nodes.delete().where(nodes.c.id == node_id))
            conn.execute(
                nodes.insert().values(
                    id=node_id,
                    hostname=hostname,
                    pid=pid,
                    slots=slots,
                    status="active",
                    started_at=now,
                    last_heartbeat_at=now,
                )
            )

    def heartbeat(self, node_id: str, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(
                nodes.update()
                .where(nodes.c.id == node_id)
                .values(last_heartbeat_at=now, status="active")
            )

    def set_status(self, node_id: str, status: str, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(
                nodes.update()
                .where(nodes.c.id == node_id)
                .values(status=status, last_heartbeat_at=now)
            )

    def probe_write(self, probe_id: str, now: datetime) -> str | None:
        """Whether the database accepts writes: None, else why not in the driver's
        words. The probe leaves nothing behind: a row inserted and deleted in one
        transaction (its commit writes pages, so a full disk or a read-only database
        refuses it; no reader ever sees the row)."""
        try:
            self._probe(probe_id, now)
        except (errors.StoreUnavailable, exc.SQLAlchemyError) as e:
            return _reason(e)
        return None

    def _probe(self, probe_id: str, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(
                nodes.insert().values(
                    id=probe_id,
                    hostname="readiness probe",
                    pid=0,
                    slots=0,
                    status="probe",
                    started_at=now,
                    last_heartbeat_at=now,
                )
            )
            conn.execute(nodes.delete().where(nodes.c.id == probe_id))

    def all(self) -> list[dict[str, object]]:
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(nodes)).mappings().all()]


def _reason(e: BaseException) -> str:
    """The driver's own words for why a statement failed (first line), else the error's."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, exc.DBAPIError) and cause.orig is not None:
            return str(cause.orig).strip().splitlines()[0]
        cause = cause.__cause__
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
