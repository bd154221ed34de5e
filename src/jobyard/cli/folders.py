"""`jobyard folders ...`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage folders.", no_args_is_help=True)
