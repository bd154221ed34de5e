"""Entry point of the ``jobyard`` script: ``jobyard serve`` through ``launch.py`` (typer
reads its options in a child process, so that the server never holds the CLI), every
other command through the typer command of ``command.py``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from jobyard.cli.command import build_app as build_app

    app: typer.Typer


def main() -> None:
    """Entry point of the ``jobyard`` script."""
    if sys.argv[1:2] == ["serve"]:
        from jobyard.cli import launch

        launch.serve(sys.argv[1:])
        return
    from jobyard.cli.command import build_app

    build_app()()


def __getattr__(name: str) -> Any:
    # ``from jobyard.cli.main import app, build_app``: the typer command of command.py
    if name in ("app", "build_app"):
        from jobyard.cli import command

        return getattr(command, name)
    raise AttributeError(name)
