"""`jobyard models ...`: register models and push immutable versions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobyard.cli import common, helptext, parsing
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.cli.render import format_bytes, format_time
from jobyard.sdk.models import Model, ModelVersion
from jobyard.sdk.registry import parse_input_role, parse_output_role

T = TypeVar("T")


class Kind(StrEnum):
    command = "command"
    python = "python"
    notebook = "notebook"
    zeppelin = "zeppelin"


app = typer.Typer(help="Manage models and their immutable versions.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Model name (or id).")]
RefArg = Annotated[str, typer.Argument(metavar="NAME:VERSION", help="A model version.")]


# ---- pure helpers -----------------------------------------------------------------------
def split_version_ref(text: str) -> tuple[str, str]:
    """``"churn:1.0.0"`` → ``("churn", "1.0.0")``; raises ValueError."""
    name, sep, version = text.partition(":")
    if not sep or not name.strip() or not version.strip():
        raise ValueError(f"{text!r} must look like NAME:VERSION")
    return name.strip(), version.strip()


def parsed(hint: str, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``; a ``ValueError`` becomes a usage error (exit code 2)."""
    try:
        return parse(*args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False) if value else "-"
    return str(value)


def _unit(value: int | None, unit: str) -> str:
    return "-" if value is None else f"{value} {unit}"


def detail_panel(title: str, rows: Iterable[tuple[str, RenderableType]]) -> Panel:
    """A two-column grid of fields in a panel."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return Panel(grid, title=Text(title, style="bold"), title_align="left", expand=False)


def _versions_table(versions: Iterable[Any]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for name in ("version", "kind", "created", "status"):
        table.add_column(name, no_wrap=True)
    for v in versions:
        status = Text("deprecated", style="yellow") if v.deprecated else Text("active", "green")
        table.add_row(v.version, v.kind, format_time(v.created_at), status)
    return table


def _model_panel(model: Model) -> Panel:
    rows: list[tuple[str, RenderableType]] = [
        ("id", model.id),
        ("description", _value(model.description)),
        ("expected interval", _unit(model.expected_interval_minutes, "min")),
        ("retention", _unit(model.retention_hours, "h")),
        ("created", format_time(model.created_at)),
        ("updated", format_time(model.updated_at)),
        ("versions", _versions_table(model.versions) if model.versions else "-"),
    ]
    return detail_panel(f"model {model.name}", rows)


def _roles(roles: Iterable[Any], *attrs: str) -> str:
    parts = []
    for r in roles:
        extra = ":".join(str(getattr(r, a) or "") for a in attrs).rstrip(":")
        flag = "required" if r.required else "optional"
        parts.append(f"{r.role}{':' + extra if extra else ''} ({flag})")
    return ", ".join(parts) or "-"


def version_panel(v: ModelVersion) -> Panel:
    a = v.artifact
    artifact = "-"
    if a is not None:
        what = "zip archive" if a.archive else "file"
        artifact = f"{a.name} ({what}, {format_bytes(a.size)})\nsha256 {a.sha256}"
    rows: list[tuple[str, RenderableType]] = [
        ("id", v.id),
        ("kind", v.kind),
        ("entrypoint", _value(v.entrypoint)),
        ("description", _value(v.description)),
        ("artifact", artifact),
        ("input roles", _roles(v.input_roles, "kind", "metric")),
        ("output roles", _roles(v.output_roles, "metric", "unit")),
        ("parameters schema", _value(v.parameters_schema)),
        ("default parameters", _value(v.default_parameters)),
        ("default environment", _value(v.default_environment)),
        ("status", "deprecated" if v.deprecated else "active"),
        ("created", format_time(v.created_at)),
    ]
    return detail_panel(f"model version {v.model}:{v.version}", rows)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# ---- commands ---------------------------------------------------------------------------
@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique model name.")],
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    expected_interval: Annotated[
        int | None,
        typer.Option("--expected-interval", metavar="MIN", min=1, help="Expected run interval."),
    ] = None,
    retention_hours: Annotated[
        int | None, typer.Option(metavar="H", min=1, help="How long results are kept.")
    ] = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Register a model."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        model = client.create_model(
            name,
            description=description,
            expected_interval_minutes=expected_interval,
            retention_hours=retention_hours,
        )
    if json_out:
        typer.echo(model.model_dump_json(indent=2))
    else:
        common.out().print(Text.assemble("model ", (model.name, "bold"), f" created ({model.id})"))


@app.command("list")
def list_models(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List models."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        models = client.models()
    if json_out:
        _echo_json([m.model_dump(mode="json") for m in models])
        return
    if not models:
        common.out().print("No models.")
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("name", "description", "created", "id"):
        table.add_column(col, overflow="fold")
    for m in models:
        table.add_row(m.name, m.description or "-", format_time(m.created_at), m.id)
    common.out().print(table)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="A model or a version.")],
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a model and its versions, or one version (NAME:VERSION)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        if ":" in ref:
            name, version = parsed("NAME:VERSION", split_version_ref, ref)
            found: Model | ModelVersion = client.version(name, version)
        else:
            found = client.model(ref)
    if json_out:
        typer.echo(found.model_dump_json(indent=2))
    elif isinstance(found, ModelVersion):
        common.out().print(version_panel(found))
    else:
        common.out().print(_model_panel(found))


@app.command("push")
def push(
    name: NameArg,
    version: Annotated[str, typer.Option("--version", "-v", help="The new version.")],
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH",
            help="The artifact: a file, or a directory (sent as a zip); optional for a command.",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            metavar=helptext.metavar(Kind),
            callback=helptext.choice(Kind),
            help="The model's kind (default: from the file name).",
        ),
    ] = None,
    entrypoint: Annotated[
        str | None,
        typer.Option(help="Command: the shell command. Directory: the file to run in it."),
    ] = None,
    input_role: Annotated[
        list[str] | None,
        typer.Option(
            "--input-role",
            metavar="ROLE[:KIND[:METRIC]][:required|optional]",
            help="An input the model expects (required unless :optional).",
        ),
    ] = None,
    output_role: Annotated[
        list[str] | None,
        typer.Option(
            "--output-role",
            metavar="ROLE[:METRIC[:UNIT]][:required|optional]",
            help="An output the model writes (optional unless :required).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="K=V", help="A default parameter (V is JSON if valid)."),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option("--schema", metavar="FILE.json", help="JSON Schema of the parameters."),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--environment", metavar="NAME", help="Default environment configuration."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="Release notes.")] = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Push a new, immutable version of a model (with its artifact)."""
    if path is not None and not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    inputs = [parsed("--input-role", parse_input_role, r) for r in input_role or []]
    outputs = [parsed("--output-role", parse_output_role, r) for r in output_role or []]
    defaults = parsed("--param", parsing.parse_params, param or [])
    params_schema = parsed("--schema", parsing.load_params_file, schema) if schema else None
    with common.handle_errors(), common.make_client(url, api_key) as client:
        found = client.push_version(
            name,
            version,
            path,
            kind=kind,
            entrypoint=entrypoint,
            input_roles=inputs,
            output_roles=outputs,
            parameters_schema=params_schema,
            default_parameters=defaults,
            default_environment=environment,
            description=description,
        )
    if json_out:
        typer.echo(found.model_dump_json(indent=2))
        return
    line = Text.assemble("pushed ", (f"{found.model}:{found.version}", "bold"), f" ({found.kind}")
    if found.artifact is not None:
        line.append(f", sha256 {found.artifact.sha256[:12]}")
    common.out().print(line.append(")"))


@app.command("versions")
def versions(
    name: NameArg, json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List a model's versions, newest first."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        found = client.versions(name)
    if json_out:
        _echo_json([v.model_dump(mode="json") for v in found])
    elif found:
        common.out().print(_versions_table(found))
    else:
        common.out().print("No versions.")


@app.command("deprecate")
def deprecate(
    ref: RefArg,
    undo: Annotated[bool, typer.Option("--undo", help="Take the deprecation back.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Deprecate a version: it still runs as NAME:VERSION, but NAME alone skips it."""
    name, version = parsed("NAME:VERSION", split_version_ref, ref)
    with common.handle_errors(), common.make_client(url, api_key) as client:
        found = client.deprecate_version(name, version, deprecated=not undo)
    state = "deprecated" if found.deprecated else "active"
    common.out().print(Text.assemble((f"{found.model}:{found.version}", "bold"), f" is {state}"))


@app.command("delete-version")
def delete_version(ref: RefArg, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a version that no job references."""
    name, version = parsed("NAME:VERSION", split_version_ref, ref)
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.delete_version(name, version)
    common.out().print(f"deleted {name}:{version}")


@app.command("delete")
def delete(name: NameArg, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a model and all its versions (refused while a job references one)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.delete_model(name)
    common.out().print(f"deleted model {name}")
