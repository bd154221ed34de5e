"""Principals, roles and API key values."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

JOB_TOKEN_PREFIX = "jyt"  # noqa: S105 - a prefix, not a secret


class Role(StrEnum):
    SUPERUSER = "superuser"  #: server-wide: manages tenants (and is admin of its own)
    ADMIN = "admin"
    OPERATOR = "operator"
    MEMBER = "member"
    VIEWER = "viewer"


#: the order of the roles: a role may do what every role below it may
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.OPERATOR: 2, Role.ADMIN: 3, Role.SUPERUSER: 4}


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
    project_id: str | None = None  #: a project-scoped key sees only that project


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: the tenant and the key that authenticated the request."""

    tenant_id: str
    key_id: str
    key_name: str
    role: Role
    project_id: str | None = None  #: the key's project scope (None: the whole tenant)
    job_id: str | None = None  #: set for a job's own token: it may only report on that job
    job_epoch: int | None = None  #: the lease epoch of the attempt the job token belongs to


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_secret() -> str:
    return secrets.token_hex(24)


def job_token(job_id: str, secret: str) -> str:
    """The token of one attempt of a job: ``jyt_<job id>_<secret>``."""
    return f"{JOB_TOKEN_PREFIX}_{job_id}_{secret}"


def parse_job_token(raw: str) -> tuple[str, str] | None:
    """(job id, secret) of a job token, or None when ``raw`` is not one."""
    parts = raw.strip().split("_")
    if len(parts) != 3 or parts[0] != JOB_TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
