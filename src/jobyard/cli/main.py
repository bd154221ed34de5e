"""The ``jobyard`` command: ``serve`` here, the client commands in ``submit.py``/``jobs.py``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from jobyard.cli import admin, definitions, envs, folders, jobs, models, results, submit
from jobyard.settings import Settings

app = typer.Typer(
    name="jobyard",
    help="jobyard: a self-hosted job execution service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold API keys
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Executor(StrEnum):
    local = "local"
    ray = "ray"


def _version(value: bool) -> None:
    if value:
        from jobyard import __version__

        typer.echo(f"jobyard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """jobyard: run jobs on this machine (or a Ray cluster) through an HTTP API."""


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(envvar="JOBYARD_HOST", show_default="127.0.0.1", help="Address to bind."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(envvar="JOBYARD_PORT", show_default="8000", help="Port to bind."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="JOBYARD_HOME",
            metavar="DIR",
            show_default="./.jobyard",
            help="Data directory (database, logs, credentials.json).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="JOBYARD_DATABASE_URL",
            metavar="URL",
            show_default="SQLite in the data directory",
            help="SQLAlchemy database URL.",
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            envvar="JOBYARD_SLOTS", min=1, show_default="CPU count", help="Jobs run at once."
        ),
    ] = None,
    executor: Annotated[
        Executor | None,
        typer.Option(envvar="JOBYARD_EXECUTOR", show_default="local", help="Where jobs run."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", envvar="JOBYARD_RAY_ADDRESS", metavar="URL", help="Ray cluster."
        ),
    ] = None,
) -> None:
    """Run the jobyard server (API and workers) in the foreground."""
    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        slots=slots,
        executor=executor.value if executor is not None else None,
        ray_address=ray_address,
    )
    from jobyard.server import serve as run_server  # type: ignore[import-not-found,unused-ignore]

    run_server(settings)


app.command(context_settings={"allow_interspersed_args": False})(submit.submit)
app.command()(jobs.status)
app.command("list")(jobs.list_jobs)
app.command()(jobs.logs)
app.command()(jobs.cancel)
app.command()(results.results)
app.add_typer(models.app, name="models")
app.add_typer(envs.app, name="envs")
app.add_typer(folders.app, name="folders")
app.add_typer(definitions.app, name="definitions")
app.add_typer(admin.tenants, name="tenants")
app.add_typer(admin.projects, name="projects")
app.add_typer(admin.keys, name="keys")
app.command()(admin.audit)


def main() -> None:
    """Entry point of the ``jobyard`` script."""
    app()
