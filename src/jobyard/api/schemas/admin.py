"""Wire models of administration: tenants, fair share, projects, API keys, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from jobyard.api.bounds import Count32, Count64
from jobyard.api.schemas.base import Strict
from jobyard.domain import fairshare
from jobyard.domain.auth import ApiKey, Role


class TenantIn(Strict):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)


class ChangeIn(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    active: bool | None = None


class TenantChangeIn(ChangeIn):
    max_running_jobs: Count32 | None = None
    max_queued_jobs: Count32 | None = None
    max_storage_bytes: Count64 | None = None
    max_log_bytes: Count64 | None = Field(None, ge=1024)
    fair_share_weight: int | None = Field(
        None,
        strict=True,
        ge=1,
        le=fairshare.MAX_WEIGHT,
        description="The tenant's weight for fair share between tenants (default 1).",
    )


class TenantOut(BaseModel):
    id: str
    name: str
    active: bool
    created_at: datetime
    max_running_jobs: int | None = None
    max_queued_jobs: int | None = None
    max_storage_bytes: int | None = None
    max_log_bytes: int | None = None
    fair_share_weight: int = fairshare.DEFAULT_WEIGHT


class FairShareOut(BaseModel):
    tenant_id: str
    weight: int
    share: float = Field(description="The tenant's part of all weights (0-1).")
    usage_s: float = Field(description="Slot-seconds used, decayed with the half-life.")
    usage_part: float = Field(description="The tenant's part of all decayed usage (0-1).")
    running_slots: int
    queued: bool = Field(description="Whether the tenant has queued jobs.")
    factor: float = Field(description="Slurm's fair-share factor: 1 unused, 0.5 at its share.")


class ProjectIn(Strict):
    name: str = Field(min_length=1, max_length=64)


class ProjectOut(BaseModel):
    id: str
    name: str
    active: bool
    created_at: datetime


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.MEMBER
    project: str | None = Field(None, max_length=64, description="Scope the key to one project.")
    expires_at: datetime | None = None
    tenant: str | None = Field(None, max_length=64, description="Superuser only: another tenant.")


class KeyOut(BaseModel):
    id: str
    prefix: str = Field(description="Recognise the key by it: jy_<id>_")
    name: str
    role: str
    tenant_id: str
    project_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(
            id=k.id,
            prefix=f"jy_{k.id}_",
            name=k.name,
            role=k.role.value,
            tenant_id=k.tenant_id,
            project_id=k.project_id,
            created_at=k.created_at,
            last_used_at=k.last_used_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
        )


class NewKeyOut(KeyOut):
    secret: str = Field(description="The whole key; shown only now, store it safely.")


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor_key_id: str | None
    actor_name: str | None
    action: str
    target: str | None
    details: dict[str, Any]
