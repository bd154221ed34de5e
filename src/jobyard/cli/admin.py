"""``jobyard tenants|projects|keys|audit``: administration from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from jobyard.cli import common
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption

tenants = typer.Typer(help="Manage tenants (superuser keys).", no_args_is_help=True)
projects = typer.Typer(help="Manage the tenant's projects (admin keys).", no_args_is_help=True)
keys = typer.Typer(help="Manage the tenant's API keys (admin keys).", no_args_is_help=True)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(show_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    common.out().print(table if rows else "None.")


@tenants.command("create")
def tenant_create(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a tenant (with its default project)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        t = client.create_tenant(tenant_id, name)
    common.out().print(f"tenant {t['id']} ({t['name']}) created")


@tenants.command("list")
def tenant_list(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List tenants."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        rows = client.tenants()
    _table(
        rows,
        (
            "id",
            "name",
            "active",
            "max_running_jobs",
            "max_queued_jobs",
            "fair_share_weight",
            "created_at",
        ),
        json_out,
    )


@tenants.command("update")
def tenant_update(
    tenant_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str | None, typer.Option("--rename", help="New display name.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--deactivate", help="Keys stop working.")
    ] = None,
    max_running_jobs: Annotated[int | None, typer.Option(help="Quota.")] = None,
    max_queued_jobs: Annotated[int | None, typer.Option(help="Quota.")] = None,
    max_storage_bytes: Annotated[int | None, typer.Option(help="Quota.")] = None,
    max_log_bytes: Annotated[int | None, typer.Option(help="Quota per job attempt.")] = None,
    weight: Annotated[
        int | None,
        typer.Option(
            "--weight",
            help="Fair-share weight: competing tenants get slots in proportion (default 1).",
        ),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Rename, (de)activate a tenant, set its quotas or its fair-share weight."""
    changes = {
        k: v
        for k, v in {
            "name": name,
            "active": active,
            "max_running_jobs": max_running_jobs,
            "max_queued_jobs": max_queued_jobs,
            "max_storage_bytes": max_storage_bytes,
            "max_log_bytes": max_log_bytes,
            "fair_share_weight": weight,
        }.items()
        if v is not None
    }
    with common.handle_errors(), common.make_client(url, api_key) as client:
        t = client.update_tenant(tenant_id, **changes)
    state = "active" if t["active"] else "deactivated"
    common.out().print(f"tenant {t['id']}: {state}, fair-share weight {t['fair_share_weight']}")


@projects.command("create")
def project_create(name: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Create a project."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        p = client.create_project(name)
    common.out().print(f"project {p['id']} ({p['name']}) created")


@projects.command("list")
def project_list(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List the tenant's projects."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        rows = client.projects()
    _table(rows, ("id", "name", "active", "created_at"), json_out)


@projects.command("update")
def project_update(
    ref: Annotated[str, typer.Argument(metavar="PROJECT")],
    name: Annotated[str | None, typer.Option("--rename")] = None,
    active: Annotated[bool | None, typer.Option("--active/--deactivate")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Rename or (de)activate a project."""
    changes = {k: v for k, v in {"name": name, "active": active}.items() if v is not None}
    with common.handle_errors(), common.make_client(url, api_key) as client:
        p = client.update_project(ref, **changes)
    common.out().print(
        f"project {p['id']} ({p['name']}): {'active' if p['active'] else 'deactivated'}"
    )


@keys.command("create")
def key_create(
    name: str,
    role: Annotated[
        str, typer.Option(help="viewer, member, operator, admin (or superuser).")
    ] = "member",
    project: Annotated[str | None, typer.Option(help="Scope the key to this project.")] = None,
    expires: Annotated[str | None, typer.Option(metavar="ISO-TIME", help="Expiry.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Superuser: a key of another tenant.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create an API key and print its secret (shown only now)."""
    expires_at = datetime.fromisoformat(expires) if expires else None
    with common.handle_errors(), common.make_client(url, api_key) as client:
        k = client.create_key(name, role, project=project, expires_at=expires_at, tenant=tenant)
    common.err().print(f"key {k['id']} ({k['role']}) created; the secret is shown only once:")
    typer.echo(k["secret"])


@keys.command("list")
def key_list(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List the tenant's keys (never their secrets)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        rows = client.keys()
    _table(
        rows,
        (
            "id",
            "prefix",
            "name",
            "role",
            "project_id",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ),
        json_out,
    )


@keys.command("revoke")
def key_revoke(key_id: str, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Revoke a key (it stops working at the next request)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.revoke_key(key_id)
    common.out().print(f"key {key_id} revoked")


def audit(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The tenant's audit log, newest first (admin keys)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        rows = client.audit_log(limit)
    _table(rows, ("at", "actor_name", "action", "target", "details"), json_out)
