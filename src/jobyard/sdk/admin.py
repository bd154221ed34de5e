"""SDK methods for administration: tenants, projects, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from jobyard.sdk.base import BaseClient


def _q(value: str) -> str:
    return quote(value, safe="")


class AdminMixin(BaseClient):
    """Administration (answers are plain dicts)."""

    def create_tenant(self, tenant_id: str, name: str) -> dict[str, Any]:
        """A new tenant with its default project (superuser keys)."""
        return self._json("POST", "/v1/tenants", json={"id": tenant_id, "name": name})

    def tenants(self) -> list[dict[str, Any]]:
        """Every tenant (superuser keys)."""
        return self._items("/v1/tenants")

    def update_tenant(self, tenant_id: str, **changes: Any) -> dict[str, Any]:
        """``name``, ``active``, quotas (``max_running_jobs``, ``max_queued_jobs``,
        ``max_storage_bytes``, ``max_log_bytes``) or ``fair_share_weight`` (superuser
        keys)."""
        return self._json("PATCH", f"/v1/tenants/{_q(tenant_id)}", json=changes)

    def set_fair_share_weight(self, tenant_id: str, weight: int) -> dict[str, Any]:
        """Set a tenant's fair-share weight: tenants that compete for slots get them in
        proportion to their weights (default 1; superuser keys)."""
        return self.update_tenant(tenant_id, fair_share_weight=weight)

    def fair_share(self) -> list[dict[str, Any]]:
        """Each tenant's weight, share, decayed usage and fair-share factor (superuser)."""
        return self._items("/v1/fair-share")

    def create_project(self, name: str) -> dict[str, Any]:
        """A new project in your tenant (admin keys)."""
        return self._json("POST", "/v1/projects", json={"name": name})

    def projects(self) -> list[dict[str, Any]]:
        """Your tenant's projects."""
        return self._items("/v1/projects")

    def update_project(self, ref: str, **changes: Any) -> dict[str, Any]:
        """Change a project (``name``, ``active``; admin keys)."""
        return self._json("PATCH", f"/v1/projects/{_q(ref)}", json=changes)

    def create_key(
        self,
        name: str,
        role: str = "member",
        *,
        project: str | None = None,
        expires_at: datetime | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """A new API key; the answer's ``secret`` is the whole key, shown only now."""
        body: dict[str, Any] = {"name": name, "role": role}
        if project is not None:
            body["project"] = project
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        if tenant is not None:
            body["tenant"] = tenant
        return self._json("POST", "/v1/keys", json=body)

    def keys(self) -> list[dict[str, Any]]:
        """Your tenant's API keys (without their secrets)."""
        return self._items("/v1/keys")

    def revoke_key(self, key_id: str) -> None:
        """Revoke an API key: it stops working at once."""
        self._request("DELETE", f"/v1/keys/{_q(key_id)}")

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries of your tenant's audit log (admin keys)."""
        return self._items("/v1/audit", params={"limit": limit})
