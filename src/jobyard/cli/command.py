"""The ``jobyard`` command (typer): ``serve`` (``serve.py``) and the client commands
(``submit.py``, ``jobs.py``, …).

``jobyard serve`` builds a command with only ``serve`` (in a child process of the server:
``launch.py``): the client commands (httpx, rich) are of no use there. ``app`` is the
whole command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from jobyard.cli import helptext
from jobyard.cli.serve import serve


def _version(value: bool) -> None:
    if value:
        from jobyard import __version__

        typer.echo(f"jobyard {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """jobyard: run jobs on this machine (or a Ray cluster) through an HTTP API."""


def build_app(*, client_commands: bool = True) -> typer.Typer:
    """The ``jobyard`` command; without ``client_commands`` only ``serve``."""
    helptext.install()
    cli = typer.Typer(
        name="jobyard",
        help="jobyard: a self-hosted job execution service.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,  # locals may hold API keys
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    cli.callback()(_root)
    cli.command()(serve)
    if not client_commands:
        return cli
    from jobyard.cli import (
        admin,
        definitions,
        envs,
        folders,
        jobs,
        models,
        results,
        retry,
        submit,
        system,
    )

    cli.command(context_settings={"allow_interspersed_args": False})(submit.submit)
    cli.command()(jobs.status)
    cli.command("list")(jobs.list_jobs)
    cli.command()(jobs.logs)
    cli.command()(jobs.cancel)
    cli.command()(retry.retry)
    cli.command()(results.results)
    cli.add_typer(models.app, name="models")
    cli.add_typer(envs.app, name="envs")
    cli.add_typer(folders.app, name="folders")
    cli.add_typer(definitions.app, name="definitions")
    cli.add_typer(admin.tenants, name="tenants")
    cli.add_typer(admin.projects, name="projects")
    cli.add_typer(admin.keys, name="keys")
    cli.command()(admin.audit)
    cli.command()(system.system)
    return cli


def __getattr__(name: str) -> typer.Typer:
    # ``from jobyard.cli.command import app``: the whole command, built once on first use
    if name == "app":
        whole = globals()["app"] = build_app()
        return whole
    raise AttributeError(name)
