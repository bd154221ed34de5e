"""Result files recorded when a job ends."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from jobyard.domain.results import Artifact, OutputType
from jobyard.store import fencing
from jobyard.store.database import Database
from jobyard.store.tables import job_artifacts


class ArtifactStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def replace(
        self,
        tenant_id: str,
        job_id: str,
        artifacts: Sequence[Artifact],
        *,
        epoch: int | None = None,
    ) -> None:
        """Record the job's results (a new attempt replaces the previous attempt's). With
        ``epoch`` (the attempt's lease epoch) fenced: StaleState, and nothing written,
        unless that attempt still holds the job."""
        with self.db.write() as conn:
            if epoch is not None:
                fencing.hold(conn, job_id, epoch)
            conn.execute(job_artifacts.delete().where(job_artifacts.c.job_id == job_id))
            for a in artifacts:
                conn.execute(
                    job_artifacts.insert().values(
                        tenant_id=tenant_id,
                        job_id=job_id,
                        path=a.path,
                        type=a.type.value,
                        format=a.format,
                        size=a.size,
                        sha256=a.sha256,
                        record_count=a.record_count,
                        role=a.role,
                        created_at=a.created_at,
                    )
                )

    def list(self, tenant_id: str, job_id: str) -> list[Artifact]:
        stmt = (
            sa.select(job_artifacts)
            .where(job_artifacts.c.tenant_id == tenant_id, job_artifacts.c.job_id == job_id)
            .order_by(job_artifacts.c.seq)
        )
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            Artifact(
                job_id=r["job_id"],
                path=r["path"],
                type=OutputType(r["type"]),
                format=r["format"],
                size=r["size"],
                sha256=r["sha256"],
                record_count=r["record_count"],
                role=r["role"],
                created_at=r["created_at"],
            )
            for r in rows
        ]
