"""``jobyard folders ...``: create, list, upload, download and delete folders and files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.table import Table

from jobyard.cli import common, exitcodes
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.cli.render import format_bytes, format_time
from jobyard.sdk.folders import expand_paths
from jobyard.sdk.models import Folder, FolderFile

app = typer.Typer(
    help="Manage folders: named places to exchange files with jobs.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Folder name (or id).")]


@contextmanager
def _local_errors() -> Iterator[None]:
    """A local file problem: one ``error:`` line and exit code 2."""
    try:
        yield
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None


def _folders_table(folders: list[Folder]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("name", overflow="fold")
    table.add_column("id", no_wrap=True)
    table.add_column("files", justify="right")
    table.add_column("size", justify="right")
    table.add_column("updated", no_wrap=True)
    table.add_column("description", overflow="fold")
    for f in folders:
        table.add_row(
            f.name,
            f.id,
            str(f.file_count),
            format_bytes(f.total_bytes),
            format_time(f.updated_at),
            f.description or "",
        )
    return table


def _files_table(files: list[FolderFile]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("sha256", no_wrap=True)
    table.add_column("updated", no_wrap=True)
    for f in files:
        table.add_row(f.path, format_bytes(f.size), f.sha256[:12], format_time(f.updated_at))
    return table


def _echo_json(value: object, kind: type[object]) -> None:
    typer.echo(TypeAdapter(kind).dump_json(value, indent=2).decode())


@app.command()
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Letters, digits, '.', '_', '-'.")],
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a folder."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        folder = client.create_folder(name, description)
    if json_out:
        typer.echo(folder.model_dump_json(indent=2))
    else:
        common.out().print(f"folder [bold]{folder.name}[/bold] created ({folder.id})")


@app.command("list")
def list_folders(
    json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List folders with their number of files and size."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        folders = client.folders()
    if json_out:
        _echo_json(folders, list[Folder])
    elif folders:
        common.out().print(_folders_table(folders))
    else:
        common.out().print("No folders.")


@app.command()
def files(
    name: NameArg, json_out: JsonOption = False, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """List the files of a folder."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        items = client.folder_files(name)
    if json_out:
        _echo_json(items, list[FolderFile])
        return
    out = common.out()
    if items:
        out.print(_files_table(items))
    total = sum(f.size for f in items)
    out.print(f"{len(items)} file{'s' if len(items) != 1 else ''}, {format_bytes(total)}")


@app.command()
def upload(
    name: NameArg,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...", help="Files and directories (directories go recursively)."
        ),
    ],
    prefix: Annotated[
        str | None, typer.Option(help="Put everything under this folder path.")
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload files into a folder, replacing files with the same path.

    A file keeps its name, a directory its name and the paths below it:
    `jobyard folders upload q3-input ./data/*.csv ./configs`."""
    with _local_errors():
        todo = expand_paths(paths, prefix)
    if not todo:
        typer.echo("error: nothing to upload (empty directories)", err=True)
        raise typer.Exit(exitcodes.USAGE)
    out = common.out()
    total = 0
    with _local_errors(), common.handle_errors(), common.make_client(url, api_key) as client:
        for local, path in todo:
            stored = client.upload(name, local, path)
            total += stored.size
            out.print(f"uploaded {stored.path} ({format_bytes(stored.size)})", markup=False)
    count = f"{len(todo)} file{'s' if len(todo) != 1 else ''}"
    out.print(f"{count}, {format_bytes(total)} uploaded to {name}", markup=False)


@app.command()
def download(
    name: NameArg,
    path: Annotated[
        str | None, typer.Argument(help="One file; omit it for every file.", show_default=False)
    ] = None,
    to: Annotated[Path, typer.Option("--to", metavar="DIR", help="Local directory.")] = Path(),
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Download one file, or all files keeping their paths, into a local directory."""
    out = common.out()
    with _local_errors(), common.handle_errors(), common.make_client(url, api_key) as client:
        if path is not None:
            to.mkdir(parents=True, exist_ok=True)
            saved = [client.download(name, path, to)]
        else:
            saved = client.download_folder(name, to)
    for local in saved:
        out.print(f"saved {local}", markup=False)
    if path is None:
        out.print(f"{len(saved)} file{'s' if len(saved) != 1 else ''} from {name}")


@app.command("rm")
def remove(
    name: NameArg,
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Files to delete.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete files from a folder."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        for path in paths:
            client.delete_file(name, path)
            common.out().print(f"deleted {path}", markup=False)


@app.command()
def delete(name: NameArg, url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a folder and all its files (refused while unfinished jobs use it)."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        client.delete_folder(name)
    common.out().print(f"folder {name} deleted")
