"""What the client commands share: options, the client factory, error handling, consoles."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console

from jobyard.cli import exitcodes, helptext
from jobyard.sdk.client import Client
from jobyard.sdk.errors import APIError, Forbidden, Unauthenticated

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="JOBYARD_URL", help="Server URL.", show_default=False),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="JOBYARD_API_KEY", help="API key.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


def priority_option(help_text: str) -> Any:
    """A ``--priority`` option: one of low, normal, high, critical (any case)."""
    return typer.Option(
        "--priority",
        metavar=helptext.metavar(Priority),
        callback=helptext.choice(Priority),
        help=help_text,
    )


def make_client(url: str | None, api_key: str | None) -> Client:
    """The client of a command: flags (and their env vars), then ``credentials.json``.

    Commands call it as ``common.make_client`` so that tests can replace it."""
    return Client(url, api_key)


def out() -> Console:
    # piped output is not cut to 80 columns: scripts and logs get whole ids
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def err() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn SDK errors into a one-line message on stderr and the matching exit code."""
    try:
        yield
    except APIError as exc:
        message = exc.message
        if isinstance(exc, Unauthenticated) and "JOBYARD_API_KEY" not in message:
            message += " (set --api-key or JOBYARD_API_KEY)"
        elif isinstance(exc, Forbidden):
            message += " (this API key's role may not do this)"
        typer.echo(f"error: {' '.join(message.split())}", err=True)
        raise typer.Exit(exitcodes.for_error(exc)) from None
