"""Administration: tenants (superuser), projects, API keys and the audit log (admins)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.admin import (
    AuditOut,
    ChangeIn,
    FairShareOut,
    KeyIn,
    KeyOut,
    NewKeyOut,
    ProjectIn,
    ProjectOut,
    TenantChangeIn,
    TenantIn,
    TenantOut,
)
from jobyard.domain import fairshare

router = APIRouter(prefix="/v1", tags=["administration"], responses=ERRORS)


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
