"""Administration: tenants (superuser), projects, API keys and the audit log (admins)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from jobyard.api.bounds import Count32, Count64
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.api.schemas import Strict
from jobyard.domain import fairshare
from jobyard.domain.auth import ApiKey, Role

router = APIRouter(prefix="/v1", tags=["administration"], responses=ERRORS)


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


def _tenant(row: Mapping[str, Any]) -> TenantOut:
    return TenantOut(
        id=row["id"],
        name=row["name"],
        active=row["active"],
        created_at=row["created_at"],
        max_running_jobs=row.get("max_running_jobs"),
        max_queued_jobs=row.get("max_queued_jobs"),
        max_storage_bytes=row.get("max_storage_bytes"),
        max_log_bytes=row.get("max_log_bytes"),
        fair_share_weight=row.get("fair_share_weight") or fairshare.DEFAULT_WEIGHT,
    )


def _project(row: Mapping[str, Any]) -> ProjectOut:
    return ProjectOut(
        id=row["id"], name=row["name"], active=row["active"], created_at=row["created_at"]
    )


@router.post("/tenants", status_code=status.HTTP_201_CREATED, summary="Create a tenant (superuser)")
def create_tenant(body: TenantIn, services: ServicesDep, principal: PrincipalDep) -> TenantOut:
    return _tenant(services.tenancy.create_tenant(principal, body.id, body.name))


@router.get("/tenants", summary="List tenants (superuser)")
def list_tenants(services: ServicesDep, principal: PrincipalDep) -> dict[str, list[TenantOut]]:
    return {"items": [_tenant(t) for t in services.tenancy.list_tenants(principal)]}


@router.patch(
    "/tenants/{tenant_id}",
    summary="Rename, (de)activate a tenant, set its quotas or fair-share weight (superuser)",
)
def update_tenant(
    tenant_id: str, body: TenantChangeIn, services: ServicesDep, principal: PrincipalDep
) -> TenantOut:
    limits = body.model_dump(exclude={"name", "active"}, exclude_none=True)
    return _tenant(
        services.tenancy.update_tenant(
            principal, tenant_id, name=body.name, active=body.active, limits=limits
        )
    )


@router.get("/fair-share", summary="Fair share: tenants' weights, usage and factors (superuser)")
def fair_share(services: ServicesDep, principal: PrincipalDep) -> dict[str, list[FairShareOut]]:
    return {"items": [FairShareOut(**row) for row in services.tenancy.fair_share(principal)]}


@router.post("/projects", status_code=status.HTTP_201_CREATED, summary="Create a project (admin)")
def create_project(body: ProjectIn, services: ServicesDep, principal: PrincipalDep) -> ProjectOut:
    return _project(services.tenancy.create_project(principal, body.name))


@router.get("/projects", summary="List the tenant's projects")
def list_projects(services: ServicesDep, principal: PrincipalDep) -> dict[str, list[ProjectOut]]:
    return {"items": [_project(p) for p in services.tenancy.list_projects(principal)]}


@router.patch("/projects/{ref}", summary="Rename or (de)activate a project (admin)")
def update_project(
    ref: str, body: ChangeIn, services: ServicesDep, principal: PrincipalDep
) -> ProjectOut:
    return _project(
        services.tenancy.update_project(principal, ref, name=body.name, active=body.active)
    )


@router.post("/keys", status_code=status.HTTP_201_CREATED, summary="Create an API key (admin)")
def create_key(body: KeyIn, services: ServicesDep, principal: PrincipalDep) -> NewKeyOut:
    key, secret = services.tenancy.create_key(
        principal,
        name=body.name,
        role=body.role,
        project=body.project,
        expires_at=body.expires_at,
        tenant_id=body.tenant,
    )
    return NewKeyOut(**KeyOut.of(key).model_dump(), secret=secret)


@router.get("/keys", summary="List the tenant's API keys (admin)")
def list_keys(services: ServicesDep, principal: PrincipalDep) -> dict[str, list[KeyOut]]:
    return {"items": [KeyOut.of(k) for k in services.tenancy.list_keys(principal)]}


@router.delete(
    "/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key (admin)"
)
def revoke_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.tenancy.revoke_key(principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", summary="The tenant's audit log, newest first (admin)")
def audit(
    services: ServicesDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[AuditOut]]:
    return {"items": [AuditOut(**a) for a in services.tenancy.audit_log(principal, limit)]}
