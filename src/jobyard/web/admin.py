"""The system page and, for admins, keys (create, shown once; revoke), projects and the
audit log. The services check the roles; the pages only hide what a role cannot do."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from jobyard import errors
from jobyard.domain.auth import ROLE_RANK, Role
from jobyard.web.base import PREFIX, User, UserDep, WebRoute, WriterDep, page, see_other
from jobyard.web.forms import text

router = APIRouter(prefix=PREFIX, route_class=WebRoute, include_in_schema=False)


@router.get("/system")
def system_page(request: Request, user: UserDep) -> Response:
    service = user.services.status
    status = service.status(user.principal)
    history = service.history(user.principal)
    at = [t.timestamp() for t in history.starts]
    charts = {
        "wait": json.dumps({"at": at, "values": history.average_wait_s}),
        "ended": json.dumps({"at": at, "values": history.ended}),
    }
    quotas = user.services.jobs.quotas
    tenant = user.principal.tenant_id
    return page(
        request,
        "system.html",
        user,
        {
            "s": status,
            "sandbox": user.services.sandbox,
            "running_limit": quotas.running_limit(tenant),
            "queued_room": quotas.queued_room(tenant),
            "log_bytes": quotas.log_bytes(tenant),
            "charts": charts,
            "bucket_min": history.bucket_s // 60,
        },
    )


def _roles(user: User) -> list[str]:
    return [r.value for r in Role if ROLE_RANK[r] <= ROLE_RANK[user.principal.role]]


def _keys_page(
    request: Request,
    user: User,
    new_secret: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    keys = user.services.tenancy.list_keys(user.principal)
    projects = user.services.tenancy.list_projects(user.principal)
    return page(
        request,
        "keys.html",
        user,
        {
            "keys": keys,
            "projects": projects,
            "roles": _roles(user),
            "new_secret": new_secret,
            "error": error,
        },
        status_code,
    )


@router.get("/admin/keys")
def keys_page(request: Request, user: UserDep) -> Response:
    return _keys_page(request, user)


@router.post("/admin/keys")
async def create_key(request: Request, user: WriterDep) -> Response:
    form = await request.form()
    role = text(form, "role") or "member"
    try:
        _key, secret = await run_in_threadpool(
            lambda: user.services.tenancy.create_key(
                user.principal,
                name=text(form, "name"),
                role=Role(role) if role in Role._value2member_map_ else Role.MEMBER,
                project=text(form, "project") or None,
            )
        )
    except errors.InvalidInput as e:
        return await run_in_threadpool(_keys_page, request, user, None, e.message, 422)
    # shown once, on this answer only (not a redirect: the secret is never kept)
    return await run_in_threadpool(_keys_page, request, user, secret)


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(request: Request, user: WriterDep, key_id: str) -> Response:
    await run_in_threadpool(user.services.tenancy.revoke_key, user.principal, key_id)
    return see_other(f"{PREFIX}/admin/keys")


@router.get("/admin/projects")
def projects_page(request: Request, user: UserDep) -> Response:
    projects = user.services.tenancy.list_projects(user.principal)
    return page(request, "projects.html", user, {"projects": projects, "error": None})


@router.post("/admin/projects")
async def create_project(request: Request, user: WriterDep) -> Response:
    form = await request.form()
    try:
        await run_in_threadpool(
            user.services.tenancy.create_project, user.principal, text(form, "name")
        )
    except errors.InvalidInput as e:
        projects = await run_in_threadpool(user.services.tenancy.list_projects, user.principal)
        return page(request, "projects.html", user, {"projects": projects, "error": e.message}, 422)
    return see_other(f"{PREFIX}/admin/projects")


@router.get("/admin/audit")
def audit_page(request: Request, user: UserDep) -> Response:
    entries = user.services.tenancy.audit_log(user.principal, limit=200)
    return page(request, "audit.html", user, {"entries": entries})
