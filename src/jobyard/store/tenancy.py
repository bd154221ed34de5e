"""Tenants, projects, key listings and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from jobyard import errors
from jobyard.domain.auth import ApiKey
from jobyard.domain.jobs import DEFAULT_PROJECT_ID
from jobyard.store.auth import key_from_row
from jobyard.store.database import Database
from jobyard.store.tables import (
    api_keys,
    audit_log,
    folder_files,
    job_artifacts,
    jobs,
    projects,
    tenants,
)


class TenancyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: bumped by every quota change made through this store (readers cache by it)
        self.quota_version = 0

    def tenant_exists(self, tenant_id: str) -> bool:
        with self.db.read() as conn:
            return (
                conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first()
                is not None
            )

    def create_tenant(self, tenant_id: str, name: str, now: datetime) -> Mapping[str, Any]:
        try:
            with self.db.write() as conn:
                conn.execute(tenants.insert().values(id=tenant_id, name=name, created_at=now))
                conn.execute(
                    projects.insert().values(
                        tenant_id=tenant_id, id=DEFAULT_PROJECT_ID, name="default", created_at=now
                    )
                )
        except exc.IntegrityError as e:
            raise errors.Conflict(f"tenant {tenant_id} already exists") from e
        return self._tenant(tenant_id)

    def tenant(self, tenant_id: str) -> Mapping[str, Any]:
        """The tenant's row; NotFound if there is none."""
        return self._tenant(tenant_id)

    def _tenant(self, tenant_id: str) -> Mapping[str, Any]:
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).mappings().first()
            )
        if row is None:
            raise errors.NotFound(f"tenant {tenant_id} does not exist", kind="tenant")
        return dict(row)

    def list_tenants(self) -> list[Mapping[str, Any]]:
        with self.db.read() as conn:
            return [
                dict(r) for r in conn.execute(sa.select(tenants).order_by(tenants.c.id)).mappings()
            ]

    def update_tenant(
        self, tenant_id: str, *, name: str | None, active: bool | None
    ) -> Mapping[str, Any]:
        values = {k: v for k, v in (("name", name), ("active", active)) if v is not None}
        if values:
            with self.db.write() as conn:
                conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(**values))
        return self._tenant(tenant_id)

    def get_project(self, tenant_id: str, ref: str) -> Mapping[str, Any] | None:
        with self.db.read() as conn:
            row = (
                conn.execute(
                    sa.select(projects).where(
                        projects.c.tenant_id == tenant_id,
                        sa.or_(projects.c.id == ref, projects.c.name == ref),
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def create_project(self, tenant_id: str, name: str, now: datetime) -> Mapping[str, Any]:
        project_id = uuid.uuid4().hex[:16]
        try:
            with self.db.write() as conn:
                conn.execute(
                    projects.insert().values(
                        tenant_id=tenant_id, id=project_id, name=name, created_at=now
                    )
                )
        except exc.IntegrityError as e:
            raise errors.Conflict(f"a project named {name!r} already exists") from e
        found = self.get_project(tenant_id, project_id)
        assert found is not None
        return found

    def list_projects(self, tenant_id: str) -> list[Mapping[str, Any]]:
        stmt = (
            sa.select(projects).where(projects.c.tenant_id == tenant_id).order_by(projects.c.name)
        )
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def update_project(
        self, tenant_id: str, ref: str, *, name: str | None, active: bool | None
    ) -> Mapping[str, Any]:
        found = self.get_project(tenant_id, ref)
        if found is None:
            raise errors.NotFound(f"project {ref} does not exist", kind="project")
        values = {k: v for k, v in (("name", name), ("active", active)) if v is not None}
        if values:
            try:
                with self.db.write() as conn:
                    conn.execute(
                        projects.update()
                        .where(projects.c.tenant_id == tenant_id, projects.c.id == found["id"])
                        .values(**values)
                    )
            except exc.IntegrityError as e:
                raise errors.Conflict(f"a project named {name!r} already exists") from e
        updated = self.get_project(tenant_id, str(found["id"]))
        assert updated is not None
        return updated

    def list_keys(self, tenant_id: str) -> list[ApiKey]:
        stmt = (
            sa.select(api_keys)
            .where(api_keys.c.tenant_id == tenant_id)
            .order_by(api_keys.c.created_at)
        )
        with self.db.read() as conn:
            return [key_from_row(r) for r in conn.execute(stmt).mappings()]

    def add_audit(self, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(audit_log.insert().values(**values))

    def audit_log(self, tenant_id: str, limit: int) -> list[Mapping[str, Any]]:
        stmt = (
            sa.select(audit_log)
            .where(audit_log.c.tenant_id == tenant_id)
            .order_by(audit_log.c.seq.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def quotas(self, tenant_id: str) -> dict[str, int | None]:
        """The tenant's own quota columns (None: not set)."""
        cols = ("max_running_jobs", "max_queued_jobs", "max_storage_bytes", "max_log_bytes")
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(*(tenants.c[c] for c in cols)).where(tenants.c.id == tenant_id)
            ).first()
        return {
            c: (int(v) if v is not None else None)
            for c, v in zip(cols, row or (None,) * 4, strict=True)
        }

    def quota(self, tenant_id: str, column: str) -> int | None:
        """One of the tenant's quota columns (None: no own value)."""
        with self.db.read() as conn:
            value = conn.execute(
                sa.select(tenants.c[column]).where(tenants.c.id == tenant_id)
            ).scalar()
        return int(value) if value is not None else None

    def set_quotas(self, tenant_id: str, values: Mapping[str, int | None]) -> None:
        with self.db.write() as conn:
            conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(**values))
        self.quota_version += 1

    def waiting_jobs(self, tenant_id: str) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.tenant_id == tenant_id, jobs.c.state.in_(["scheduled", "queued"]))
        )
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def storage_used(self, tenant_id: str) -> int:
        """Bytes of the tenant's folder files and job results."""
        with self.db.read() as conn:
            files = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(folder_files.c.size), 0)).where(
                    folder_files.c.tenant_id == tenant_id
                )
            ).scalar_one()
            results = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(job_artifacts.c.size), 0)).where(
                    job_artifacts.c.tenant_id == tenant_id
                )
            ).scalar_one()
        return int(files) + int(results)
