"""``jobyard definitions ...``: job definitions (a model version with its inputs bound,
default parameters and an optional cron schedule)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.console import RenderableType
from rich.table import Table

from jobyard.cli import common, parsing, render, resolve
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.cli.models import detail_panel
from jobyard.cli.submit import parse_bindings
from jobyard.sdk.definitions import Definition

app = typer.Typer(help="Manage job definitions (scheduled or run on demand).", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Definition name.")],
    model: Annotated[str, typer.Option("--model", metavar="NAME:VERSION", help="Model version.")],
    bind: Annotated[
        list[str] | None,
        typer.Option("--bind", metavar="ROLE=folder:NAME|ROLE=VALUE", help="Bind an input role."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", metavar="K=V", help="Default parameter.")
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--environment", metavar="NAME", help="Environment configuration."),
    ] = None,
    output_folder: Annotated[
        str | None, typer.Option("--output-folder", help="Output folder.")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", metavar="CRON", help="Cron, UTC.")
    ] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off.")] = False,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a job definition."""
    try:
        bindings = parse_bindings(bind or [])
        params = parsing.parse_params(param or [], {})
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with common.handle_errors(), common.make_client(url, api_key) as client:
        d = client.create_definition(
            name,
            model,
            role_bindings=bindings,
            parameters=params,
            environment=environment,
            output_folder=output_folder,
            schedule=schedule,
            active=not inactive,
        )
    if json_out:
        typer.echo(d.model_dump_json(indent=2))
    else:
        nxt = f", next run {d.next_run_at}" if d.next_run_at else ""
        common.out().print(f"definition {d.id} ({d.name}){nxt}")


@app.command("list")
def list_definitions(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List job definitions."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        items = client.definitions()
    if json_out:
        typer.echo(TypeAdapter(list[Definition]).dump_json(items, indent=2).decode())
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "name", "active", "schedule", "next run", "last job"):
        table.add_column(col)
    for d in items:
        table.add_row(
            d.id,
            d.name,
            "yes" if d.active else "no",
            d.schedule or "-",
            d.next_run_at or "-",
            d.last_job_id or "-",
        )
    common.out().print(table if items else "No job definitions.")


DefIdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Definition id (or its first characters).")
]


@app.command()
def show(
    def_id: DefIdArg,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a job definition."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        d = client.definition(resolve.definition_id(client, def_id))
    if json_out:
        typer.echo(d.model_dump_json(indent=2))
        return
    rows: list[tuple[str, RenderableType]] = [
        ("id", d.id),
        ("active", "yes" if d.active else "no"),
        ("model version", d.model_version_id),
        ("bindings", json.dumps(d.role_bindings) if d.role_bindings else "-"),
        ("parameters", json.dumps(d.parameters) if d.parameters else "-"),
        ("schedule", d.schedule or "-"),
        ("next run", d.next_run_at or "-"),
        ("last job", d.last_job_id or "-"),
    ]
    common.out().print(detail_panel(f"definition {d.name}", rows))


@app.command()
def run(
    def_id: DefIdArg,
    param: Annotated[
        list[str] | None, typer.Option("--param", metavar="K=V", help="Parameter.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the job id.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a job definition now."""
    try:
        params = parsing.parse_params(param or [], {})
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job = client.run_definition(resolve.definition_id(client, def_id), params)
    typer.echo(job.id) if quiet else common.out().print(render.job_line(job))


@app.command()
def delete(
    def_id: DefIdArg,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a job definition (its jobs stay)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.delete_definition(resolve.definition_id(client, def_id))
    common.out().print(f"deleted definition {def_id}")
