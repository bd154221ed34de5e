"""Tenants, projects, API keys and the audit log (administration use cases)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobyard import errors
from jobyard.clock import Clock, to_epoch
from jobyard.domain import fairshare
from jobyard.domain.auth import ROLE_RANK, ApiKey, Principal, Role
from jobyard.domain.jobs import DEFAULT_PROJECT_ID
from jobyard.service.auth import AuthService
from jobyard.store.fairshare import FairShareStore
from jobyard.store.tenancy import TenancyStore


def require(principal: Principal, role: Role, what: str) -> None:
    """Forbidden unless the principal's role is at least ``role``."""
    if ROLE_RANK[principal.role] < ROLE_RANK[role]:
        raise errors.Forbidden(
            f"{what} needs the {role.value} role; this key is {principal.role.value}"
        )


class TenancyService:
    def __init__(
        self,
        *,
        store: TenancyStore,
        auth: AuthService,
        clock: Clock,
        single_tenant_reason: str | None = None,
        fair_share: FairShareStore | None = None,
    ) -> None:
        self.store = store
        self.fair_share_store = fair_share
        self.auth = auth
        self.clock = clock
        #: why this node may serve one tenant only (its jobs are not sandboxed), or None
        self.single_tenant_reason = single_tenant_reason

    def _single_tenant_message(self) -> str:
        return (
            f"jobs on this node are not sandboxed ({self.single_tenant_reason}), so a job of "
            "one tenant could read every other tenant's files and keys; install bubblewrap "
            "and run the server as root, or start it with --allow-unsandboxed-jobs if every "
            "tenant trusts every other"
        )

    def check_single_tenant(self) -> None:
        """At start: refuse to serve several tenants with jobs that are not sandboxed."""
        if self.single_tenant_reason is None:
            return
        tenants = self.store.list_tenants()
        if len(tenants) > 1:
            raise errors.Conflict(
                f"this database has {len(tenants)} tenants, but " + self._single_tenant_message()
            )

    # ---- projects --------------------------------------------------------------------
    def check_project(self, principal: Principal, project_ref: str) -> str:
        """The id of the caller's project ``project_ref`` (id or name); NotFound when it is
        not in the caller's tenant, or outside a project-scoped key's project."""
        project = self.store.get_project(principal.tenant_id, project_ref)
        if project is None or not project["active"]:
            raise errors.NotFound(f"project {project_ref} does not exist", kind="project")
        if principal.project_id is not None and project["id"] != principal.project_id:
            raise errors.NotFound(f"project {project_ref} does not exist", kind="project")
        return str(project["id"])

    def create_project(self, principal: Principal, name: str) -> Mapping[str, Any]:
        require(principal, Role.ADMIN, "creating a project")
        _check_name(name)
        project = self.store.create_project(principal.tenant_id, name, self.clock.now())
        self._audit(principal, "project.create", project["id"], {"name": name})
        return project

    def list_projects(self, principal: Principal) -> list[Mapping[str, Any]]:
        return self.store.list_projects(principal.tenant_id)

    def update_project(
        self, principal: Principal, ref: str, *, name: str | None = None, active: bool | None = None
    ) -> Mapping[str, Any]:
        require(principal, Role.ADMIN, "changing a project")
        if name is not None:
            _check_name(name)
        if ref == DEFAULT_PROJECT_ID and active is False:
            raise errors.Conflict("the default project cannot be deactivated")
        project = self.store.update_project(principal.tenant_id, ref, name=name, active=active)
        self._audit(principal, "project.update", project["id"], {"name": name, "active": active})
        return project

    # ---- tenants (superuser) -----------------------------------------------------------
    def create_tenant(self, principal: Principal, tenant_id: str, name: str) -> Mapping[str, Any]:
        require(principal, Role.SUPERUSER, "creating a tenant")
        _check_name(tenant_id, "id")
        if self.single_tenant_reason is not None:
            raise errors.Conflict(
                "a second tenant cannot be created: " + self._single_tenant_message()
            )
        tenant = self.store.create_tenant(tenant_id, name, self.clock.now())
        self._audit(principal, "tenant.create", tenant_id, {"name": name})
        return tenant

    def list_tenants(self, principal: Principal) -> list[Mapping[str, Any]]:
        require(principal, Role.SUPERUSER, "listing tenants")
        return self.store.list_tenants()

    def update_tenant(
        self,
        principal: Principal,
        tenant_id: str,
        *,
        name: str | None = None,
        active: bool | None = None,
        limits: Mapping[str, int | None] | None = None,
    ) -> Mapping[str, Any]:
        """Rename, (de)activate, or set quotas and the fair-share weight (``limits``:
        columns of :data:`TENANT_LIMITS`; None values are left as they are)."""
        require(principal, Role.SUPERUSER, "changing a tenant")
        if tenant_id == principal.tenant_id and active is False:
            raise errors.Conflict("a superuser cannot deactivate its own tenant")
        if not self.store.tenant_exists(tenant_id):
            raise errors.NotFound(f"tenant {tenant_id} does not exist", kind="tenant")
        changes = {k: v for k, v in (limits or {}).items() if v is not None}
        for column, value in changes.items():
            _check_limit(column, value)
        tenant = self.store.update_tenant(tenant_id, name=name, active=active)
        if changes:
            self.store.set_quotas(tenant_id, changes)
            tenant = self.store.tenant(tenant_id)
        self.auth.forget_keys()
        self._audit(
            principal, "tenant.update", tenant_id, {"name": name, "active": active, **changes}
        )
        return tenant

    def fair_share(self, principal: Principal) -> list[dict[str, Any]]:
        """Each tenant's weight, share, decayed usage and fair-share factor, as Slurm's
        ``sshare`` shows them; the tenants furthest under their share first."""
        require(principal, Role.SUPERUSER, "reading the fair share of tenants")
        if self.fair_share_store is None:
            raise errors.Conflict("fair share is not available on this node")
        snap = self.fair_share_store.snapshot(to_epoch(self.clock.now()))
        for t in self.store.list_tenants():
            snap.standing(str(t["id"]))
        parts = fairshare.shares(snap.standings)
        rows = [
            {
                "tenant_id": t,
                "weight": st.weight,
                "share": parts[t][1],
                "usage_s": max(st.usage, 0.0),
                "usage_part": parts[t][0],
                "running_slots": max(st.running, 0),
                "queued": t in snap.queued,
                "factor": parts[t][2],
            }
            for t, st in snap.standings.items()
        ]
        return sorted(rows, key=lambda r: (-r["factor"], r["tenant_id"]))

    # ---- API keys ----------------------------------------------------------------------
    def create_key(
        self,
        principal: Principal,
        *,
        name: str,
        role: Role,
        project: str | None = None,
        expires_at: datetime | None = None,
        tenant_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key (its secret is returned once). Admins create keys for their tenant,
        up to their own role; a superuser also for other tenants."""
        target = tenant_id or principal.tenant_id
        if target != principal.tenant_id:
            require(principal, Role.SUPERUSER, "creating a key for another tenant")
            if not self.store.tenant_exists(target):
                raise errors.NotFound(f"tenant {target} does not exist", kind="tenant")
        else:
            require(principal, Role.ADMIN, "creating an API key")
        if ROLE_RANK[role] > ROLE_RANK[principal.role]:
            raise errors.Forbidden(f"a {principal.role.value} key cannot create a {role.value} key")
        if not name.strip() or len(name) > 200:
            raise errors.InvalidInput("name must be 1 to 200 characters", field="name")
        if expires_at is not None and expires_at <= self.clock.now():
            raise errors.InvalidInput("expires_at must be in the future", field="expires_at")
        project_id = None
        if principal.project_id is not None and target == principal.tenant_id:
            project = project or principal.project_id  # a scoped key mints scoped keys only
            if self.check_project(principal, project) != principal.project_id:
                raise errors.NotFound(f"project {project} does not exist", kind="project")
        if project is not None:
            scoped = Principal(tenant_id=target, key_id="", key_name="", role=Role.ADMIN)
            project_id = self.check_project(scoped, project)
        key, secret = self.auth.create_key(
            tenant_id=target, name=name, role=role, expires_at=expires_at, project_id=project_id
        )
        self._audit(
            principal,
            "key.create",
            key.id,
            {"name": name, "role": role.value, "tenant": target, "project": project_id},
        )
        return key, secret

    def list_keys(self, principal: Principal) -> list[ApiKey]:
        require(principal, Role.ADMIN, "listing API keys")
        return self.store.list_keys(principal.tenant_id)

    def revoke_key(self, principal: Principal, key_id: str) -> None:
        require(principal, Role.ADMIN, "revoking an API key")
        if not self.auth.store.revoke_key(principal.tenant_id, key_id, self.clock.now()):
            raise errors.NotFound(f"API key {key_id} does not exist", kind="key")
        self.auth.forget_keys()
        self._audit(principal, "key.revoke", key_id, {})

    # ---- audit ------------------------------------------------------------------------
    def audit(
        self, principal: Principal, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        """Record an operator's or admin's action (e.g. cancelling someone else's job)."""
        self._audit(principal, action, target, details)

    def _audit(
        self, principal: Principal, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        self.store.add_audit(
            tenant_id=principal.tenant_id,
            at=self.clock.now(),
            actor_key_id=principal.key_id,
            actor_name=principal.key_name,
            action=action,
            target=target,
            details=dict(details),
        )

    def audit_log(self, principal: Principal, limit: int = 100) -> list[Mapping[str, Any]]:
        require(principal, Role.ADMIN, "reading the audit log")
        return self.store.audit_log(principal.tenant_id, limit)


#: the tenant columns an admin sets through ``update_tenant``, with their bounds
TENANT_LIMITS: dict[str, tuple[int, int]] = {
    "max_running_jobs": (0, 2**31 - 1),
    "max_queued_jobs": (0, 2**31 - 1),
    "max_storage_bytes": (0, 2**63 - 1),
    "max_log_bytes": (1024, 2**63 - 1),
    "fair_share_weight": (1, fairshare.MAX_WEIGHT),
}


def _check_limit(column: str, value: int) -> None:
    bounds = TENANT_LIMITS.get(column)
    if bounds is None:
        raise errors.InvalidInput(f"{column} is not a tenant setting", field=column)
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.InvalidInput(
            f"{column} must be a whole number from {low} to {high}, not {value!r}", field=column
        )


def _check_name(name: str, field: str = "name") -> None:
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name or ""):
        raise errors.InvalidInput(
            f"{field} {name!r} must be 1 to 64 letters, digits, '.', '_' or '-'", field=field
        )
