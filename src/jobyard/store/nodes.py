"""Node rows: each serving process that runs jobs registers and heartbeats here."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

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

    def all(self) -> list[dict[str, object]]:
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(nodes)).mappings().all()]
