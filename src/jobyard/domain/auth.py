"""Principals, roles and API key values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    MEMBER = "member"
    VIEWER = "viewer"


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """A stored API key (never the secret)."""

    id: str
    tenant_id: str
    name: str
    role: Role
    secret_hash: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: the tenant and the key that authenticated the request."""

    tenant_id: str
    key_id: str
    key_name: str
    role: Role
