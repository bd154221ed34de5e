"""`jobyard envs ...`: environment configurations (env vars, pip, files, resources)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobyard.cli import common, helptext, parsing
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.cli.models import detail_panel, parsed
from jobyard.cli.render import format_time
from jobyard.sdk.models import Environment

app = typer.Typer(help="Manage environment configurations.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Environment name (or id).")]
PipOption = Annotated[
    list[str] | None,
    typer.Option("--pip", metavar="REQ", help="A pip requirement, e.g. 'pandas==2.*'."),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option("--env", metavar="K=V", help="An environment variable of its jobs."),
]
FileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--file",
        metavar="PATH=LOCALFILE",
        help="Put LOCALFILE's text at PATH in each job's working directory.",
    ),
]
CpuOption = Annotated[int | None, typer.Option("--cpu", min=1, max=1024, help="CPU slots.")]
MemoryOption = Annotated[
    int | None, typer.Option("--memory-mb", min=16, help="Memory limit of a job (MiB).")
]
ConcurrentOption = Annotated[
    int | None,
    typer.Option("--max-concurrent", min=1, help="Jobs of this environment run at once."),
]
DescriptionOption = Annotated[str | None, typer.Option(help="Free text.")]
NETWORK_HELP = "full: the host's network; none: a loopback interface only."


class Network(StrEnum):
    full = "full"
    none = "none"


NetworkOption = typer.Option(
    metavar=helptext.metavar(Network), callback=helptext.choice(Network), help=NETWORK_HELP
)


def read_file_specs(items: Iterable[str]) -> dict[str, str]:
    """``PATH=LOCALFILE`` items as ``{PATH: text of LOCALFILE}``; raises ValueError."""
    out: dict[str, str] = {}
    for item in items:
        target, local = parsing.split_pair(item, "--file")
        if not local:
            raise ValueError(f"--file {item!r} must look like PATH=LOCALFILE")
        try:
            out[target] = Path(local).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {local}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"{local} is not UTF-8 text") from exc
    return out


def _panel(env: Environment) -> Panel:
    files = ", ".join(f"{p} ({len(t.encode())} B)" for p, t in sorted(env.files.items()))
    limit = f"{env.memory_limit_mb} MiB" if env.memory_limit_mb else "-"
    rows: list[tuple[str, RenderableType]] = [
        ("id", env.id),
        ("description", env.description or "-"),
        ("env", ", ".join(sorted(env.env_vars)) or "-"),  # names only: values may be secrets
        ("pip", "\n".join(env.pip_requirements) or "-"),
        ("files", files or "-"),
        ("cpu slots", str(env.cpu_slots)),
        ("memory limit", limit),
        ("max concurrent jobs", str(env.max_concurrent_jobs)),
        ("network", env.network),
        ("created", format_time(env.created_at)),
        ("updated", format_time(env.updated_at)),
    ]
    return detail_panel(f"environment {env.name}", rows)


def _show(env: Environment, json_out: bool, verb: str | None = None) -> None:
    if json_out:
        typer.echo(env.model_dump_json(indent=2))
    elif verb:
        common.out().print(Text.assemble("environment ", (env.name, "bold"), f" {verb}"))
    else:
        common.out().print(_panel(env))


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique environment name.")],
    pip: PipOption = None,
    env: EnvOption = None,
    file: FileOption = None,
    cpu: CpuOption = None,
    memory_mb: MemoryOption = None,
    max_concurrent: ConcurrentOption = None,
    network: Annotated[str, NetworkOption] = Network.full.value,
    description: DescriptionOption = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create an environment configuration."""
    env_vars = parsed("--env", parsing.parse_pairs, env or [], "--env")
    files = parsed("--file", read_file_specs, file or [])
    with common.handle_errors(), common.make_client(url, api_key) as client:
        created = client.create_environment(
            name,
            env_vars=env_vars,
            pip=pip or [],
            files=dict(files),
            cpu_slots=cpu or 1,
            memory_limit_mb=memory_mb,
            max_concurrent_jobs=max_concurrent or 1,
            description=description,
            network=network,
        )
    _show(created, json_out, f"created ({created.id})")


@app.command("update")
def update(
    name: NameArg,
    rename: Annotated[str | None, typer.Option("--rename", metavar="NEW", help="New name.")] = None,
    pip: PipOption = None,
    env: EnvOption = None,
    file: FileOption = None,
    clear_pip: Annotated[bool, typer.Option("--clear-pip", help="No pip requirements.")] = False,
    clear_env: Annotated[bool, typer.Option("--clear-env", help="No env variables.")] = False,
    clear_files: Annotated[bool, typer.Option("--clear-files", help="No files.")] = False,
    cpu: CpuOption = None,
    memory_mb: MemoryOption = None,
    no_memory_limit: Annotated[
        bool, typer.Option("--no-memory-limit", help="Remove the memory limit.")
    ] = False,
    max_concurrent: ConcurrentOption = None,
    network: Annotated[str | None, NetworkOption] = None,
    description: DescriptionOption = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Change an environment. --pip/--env/--file replace the whole list; jobs that start
    afterwards (including queued ones) get the new configuration."""
    changes: dict[str, Any] = {}
    if rename is not None:
        changes["name"] = rename
    if pip or clear_pip:
        changes["pip"] = list(pip or [])
    if env or clear_env:
        changes["env_vars"] = parsed("--env", parsing.parse_pairs, env or [], "--env")
    if file or clear_files:
        changes["files"] = dict(parsed("--file", read_file_specs, file or []))
    if memory_mb is not None and no_memory_limit:
        raise typer.BadParameter("give --memory-mb or --no-memory-limit, not both")
    if memory_mb is not None or no_memory_limit:
        changes["memory_limit_mb"] = memory_mb
    for key, value in (
        ("cpu_slots", cpu),
        ("max_concurrent_jobs", max_concurrent),
        ("description", description),
        ("network", network),
    ):
        if value is not None:
            changes[key] = value
    if not changes:
        raise typer.BadParameter("nothing to change: give at least one option")
    with common.handle_errors(), common.make_client(url, api_key) as client:
        updated = client.update_environment(name, **changes)
    _show(updated, json_out, "updated")


@app.command("list")
def list_envs(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List environments."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        envs = client.environments()
    if json_out:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in envs], indent=2))
        return
    if not envs:
        common.out().print("No environments.")
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("name", "pip", "cpu", "memory", "max concurrent", "network", "id"):
        table.add_column(col, overflow="fold")
    for e in envs:
        memory = f"{e.memory_limit_mb} MiB" if e.memory_limit_mb else "-"
        pip = ", ".join(e.pip_requirements) or "-"
        table.add_row(
            e.name, pip, str(e.cpu_slots), memory, str(e.max_concurrent_jobs), e.network, e.id
        )
    common.out().print(table)


@app.command("show")
def show(
    name: NameArg, json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """Show an environment (variable names only; --json shows the values)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        found = client.environment(name)
    _show(found, json_out)


@app.command("delete")
def delete(name: NameArg, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete an environment (refused while jobs that have not ended use it)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.delete_environment(name)
    common.out().print(f"deleted environment {name}")
