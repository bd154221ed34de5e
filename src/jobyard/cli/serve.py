"""``jobyard serve``: the server's settings from options and ``JOBYARD_*`` variables,
handed to ``launch.start``. With ``launch.py``, the only CLI module that imports server
code (``jobyard.settings`` here; ``launch.py`` runs ``jobyard.server``); the client
commands reach the server through the SDK only."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from jobyard.cli import helptext, launch
from jobyard.settings import Settings


class Executor(StrEnum):
    local = "local"
    ray = "ray"


class Sandboxing(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


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
    storage_url: Annotated[
        str | None,
        typer.Option(
            "--storage-url",
            envvar="JOBYARD_STORAGE_URL",
            metavar="URL",
            show_default="DIR/storage",
            help="Where folders, artifacts, results and (when set) job logs live: a directory "
            "(an NFS mount shared by several nodes) or an fsspec URL such as s3://bucket/prefix.",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="JOBYARD_PUBLIC_URL",
            metavar="URL",
            show_default="http://HOST:PORT",
            help="The API's URL as clients and jobs reach it (dispatch-only node: an API node's).",
        ),
    ] = None,
    no_api: Annotated[
        bool,
        typer.Option(
            "--no-api", envvar="JOBYARD_NO_API", help="Dispatch jobs only: serve no HTTP API."
        ),
    ] = False,
    no_dispatcher: Annotated[
        bool,
        typer.Option(
            "--no-dispatcher",
            envvar="JOBYARD_NO_DISPATCHER",
            help="Serve the API only: run no jobs on this node.",
        ),
    ] = False,
    slots: Annotated[
        int | None,
        typer.Option(
            envvar="JOBYARD_SLOTS",
            min=1,
            show_default="CPU count; with --executor ray the cluster's CPUs",
            help="Jobs run at once.",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            envvar="JOBYARD_EXECUTOR",
            metavar=helptext.metavar(Executor),
            callback=helptext.choice(Executor),
            show_default="local",
            help="Where jobs run.",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", envvar="JOBYARD_RAY_ADDRESS", metavar="URL", help="Ray cluster."
        ),
    ] = None,
    sandbox: Annotated[
        str | None,
        typer.Option(
            envvar="JOBYARD_SANDBOX",
            metavar=helptext.metavar(Sandboxing),
            callback=helptext.choice(Sandboxing),
            show_default="auto",
            help="Run each job in a sandbox (bubblewrap, cgroups): auto where the host "
            "allows it, on to refuse to start without, off never.",
        ),
    ] = None,
    allow_unsandboxed_jobs: Annotated[
        bool | None,
        typer.Option(
            "--allow-unsandboxed-jobs",
            envvar="JOBYARD_ALLOW_UNSANDBOXED_JOBS",
            help="Serve several tenants although jobs cannot be sandboxed here.",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="JOBYARD_LOG_LEVEL",
            metavar=helptext.metavar(LogLevel),
            callback=helptext.choice(LogLevel),
            show_default="info",
            help="Log this and more severe (info: each request and each job state change).",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            envvar="JOBYARD_LOG_FORMAT",
            metavar=helptext.metavar(LogFormat),
            callback=helptext.choice(LogFormat),
            show_default="text",
            help="json: one JSON object per line, for a log collector.",
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            envvar="JOBYARD_ACCESS_LOG",
            show_default="on",
            help="One line per HTTP request (method, path, status, time).",
        ),
    ] = None,
) -> None:
    """Run the jobyard server (API and workers) in the foreground."""
    if slots is None and executor is Executor.ray:
        slots = 0  # the Ray cluster's CPUs
    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        storage_url=storage_url,
        public_url=public_url,
        run_api=False if no_api else None,
        run_dispatcher=False if no_dispatcher else None,
        slots=slots,
        executor=executor,
        ray_address=ray_address,
        sandbox=sandbox,
        allow_unsandboxed_jobs=allow_unsandboxed_jobs or None,
        log_level=log_level,
        log_format=log_format,
        access_log=access_log,
    )
    launch.start(settings)
