"""`jobyard envs ...`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage envs.", no_args_is_help=True)
