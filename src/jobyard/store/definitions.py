"""Job definition rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobyard import errors
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.priorities import Priority
from jobyard.domain.registry import Model, ModelVersion
from jobyard.store import registry
from jobyard.store.database import Database
from jobyard.store.tables import job_definitions


def _row(r: Mapping[Any, Any]) -> JobDefinition:
    return JobDefinition(
        id=r["id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        description=r["description"],
        model_version_id=r["model_version_id"],
        role_bindings=tuple(r["role_bindings"] or ()),
        default_parameters=r["default_parameters"] or {},
        environment_id=r["environment_id"],
        output_folder_id=r["output_folder_id"],
        priority=Priority(r["priority"]),
        timeout_s=r["timeout_s"],
        active=r["active"],
        schedule=r["schedule"],
        next_run_at=r["next_run_at"],
        last_run_at=r["last_run_at"],
        last_job_id=r["last_job_id"],
        max_attempts=r["max_attempts"],
        retry_on=tuple(r["retry_on"])
        if r["retry_on"] is not None
        else ("failed", "timed_out", "node_lost"),
        notifications=r["notifications"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


class DefinitionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(
        self,
        tenant_id: str,
        values: Mapping[str, Any],
        now: datetime,
        *,
        model: Model | None = None,
        version: ModelVersion | None = None,
    ) -> JobDefinition:
        """Insert the definition; with the new ``model`` and ``version`` it runs, when
        given, in the same transaction (all or nothing). The model goes into the
        definition's project."""
        def_id = str(uuid.uuid4())
        with self.db.write() as conn:
            if model is not None:
                registry.insert_model(conn, model, values.get("project_id"))
            if version is not None:
                registry.insert_version(conn, version)
            conn.execute(
                job_definitions.insert().values(
                    id=def_id, tenant_id=tenant_id, created_at=now, updated_at=now, **values
                )
            )
        return self.get(tenant_id, def_id)

    def get(self, tenant_id: str, def_id: str, project_id: str | None = None) -> JobDefinition:
        cond = [job_definitions.c.id == def_id, job_definitions.c.tenant_id == tenant_id]
        if project_id is not None:
            cond.append(job_definitions.c.project_id == project_id)
        with self.db.read() as conn:
            r = conn.execute(sa.select(job_definitions).where(*cond)).mappings().first()
        if r is None:
            raise errors.NotFound(
                f"job definition {def_id} does not exist", kind="definition", id=def_id
            )
        return _row(r)

    def list_all(self, tenant_id: str, project_id: str | None = None) -> list[JobDefinition]:
        stmt = (
            sa.select(job_definitions)
            .where(job_definitions.c.tenant_id == tenant_id)
            .order_by(job_definitions.c.created_at, job_definitions.c.id)
        )
        if project_id is not None:
            stmt = stmt.where(job_definitions.c.project_id == project_id)
        with self.db.read() as conn:
            return [_row(r) for r in conn.execute(stmt).mappings().all()]

    def update(
        self, tenant_id: str, def_id: str, values: Mapping[str, Any], now: datetime
    ) -> JobDefinition:
        with self.db.write() as conn:
            res = conn.execute(
                job_definitions.update()
                .where(job_definitions.c.id == def_id, job_definitions.c.tenant_id == tenant_id)
                .values(updated_at=now, **values)
            )
        if not res.rowcount:
            raise errors.NotFound(
                f"job definition {def_id} does not exist", kind="definition", id=def_id
            )
        return self.get(tenant_id, def_id)

    def delete(self, tenant_id: str, def_id: str) -> None:
        with self.db.write() as conn:
            res = conn.execute(
                job_definitions.delete().where(
                    job_definitions.c.id == def_id, job_definitions.c.tenant_id == tenant_id
                )
            )
        if not res.rowcount:
            raise errors.NotFound(
                f"job definition {def_id} does not exist", kind="definition", id=def_id
            )

    def due(self, now: datetime, limit: int = 100) -> list[JobDefinition]:
        """Active scheduled definitions whose next run time has come (all tenants)."""
        stmt = (
            sa.select(job_definitions)
            .where(
                job_definitions.c.active.is_(True),
                job_definitions.c.next_run_at.is_not(None),
                job_definitions.c.next_run_at <= now,
            )
            .order_by(job_definitions.c.next_run_at)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [_row(r) for r in conn.execute(stmt).mappings().all()]

    def advance(self, d: JobDefinition, next_run_at: datetime | None, now: datetime) -> bool:
        """Move the schedule on, if nobody else did first (compare-and-set on next_run_at):
        True means this caller owns this run."""
        with self.db.write() as conn:
            res = conn.execute(
                job_definitions.update()
                .where(job_definitions.c.id == d.id, job_definitions.c.next_run_at == d.next_run_at)
                .values(next_run_at=next_run_at, last_run_at=now, updated_at=now)
            )
        return bool(res.rowcount)

    def set_last_job(self, def_id: str, job_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                job_definitions.update()
                .where(job_definitions.c.id == def_id)
                .values(last_job_id=job_id)
            )
