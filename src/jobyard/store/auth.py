"""Tenants and API keys."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobyard.domain.auth import ApiKey, Role
from jobyard.domain.jobs import DEFAULT_PROJECT_ID
from jobyard.store.database import Database
from jobyard.store.tables import api_keys, projects, tenants


def key_from_row(row: Mapping[Any, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        role=Role(row["role"]),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        project_id=row["project_id"],
    )


class AuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure_tenant(self, tenant_id: str, name: str, now: datetime) -> None:
        with self.db.write() as conn:
            exists = conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first()
            if exists is None:
                conn.execute(tenants.insert().values(id=tenant_id, name=name, created_at=now))
                conn.execute(
                    projects.insert().values(
                        tenant_id=tenant_id,
                        id=DEFAULT_PROJECT_ID,
                        name="Default project",
                        created_at=now,
                    )
                )

    def tenant_active(self, tenant_id: str) -> bool:
        with self.db.read() as conn:
            active = conn.execute(
                sa.select(tenants.c.active).where(tenants.c.id == tenant_id)
            ).scalar_one_or_none()
        return bool(active)

    def count_keys(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(api_keys)).scalar_one())

    def insert_key(self, key: ApiKey) -> None:
        with self.db.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    tenant_id=key.tenant_id,
                    name=key.name,
                    role=key.role.value,
                    secret_hash=key.secret_hash,
                    created_at=key.created_at,
                    expires_at=key.expires_at,
                    project_id=key.project_id,
                )
            )

    def get_key(self, key_id: str) -> ApiKey | None:
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
            )
        return key_from_row(row) if row else None

    def get_active_key(self, key_id: str) -> tuple[ApiKey, bool] | None:
        """The key and whether its tenant is active, in one query."""
        stmt = (
            sa.select(api_keys, tenants.c.active.label("tenant_active"))
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.id == key_id)
        )
        with self.db.read() as conn:
            row = conn.execute(stmt).mappings().first()
        return (key_from_row(row), bool(row["tenant_active"])) if row else None

    def touch_key(self, key_id: str, now: datetime) -> None:
        with self.db.write() as conn:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now))

    def revoke_key(self, tenant_id: str, key_id: str, now: datetime) -> bool:
        with self.db.write() as conn:
            res = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.tenant_id == tenant_id)
                .values(revoked_at=now)
            )
        return bool(res.rowcount)
