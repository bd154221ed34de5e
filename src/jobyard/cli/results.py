"""``jobyard results ID``: what a job produced; ``--download DIR`` fetches the files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from jobyard.cli import common, render, resolve
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption


def results(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id (or its first characters).")],
    download: Annotated[
        Path | None,
        typer.Option("--download", metavar="DIR", help="Download every result file here."),
    ] = None,
    output_type: Annotated[
        str | None,
        typer.Option("--type", help="Only report, data, model, visualization, notebook or other."),
    ] = None,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List a job's result files (recorded when it ended), or download them."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job_id = resolve.job_id(client, job_id)
        res = client.results(job_id, output_type=output_type)
        written = client.download_results(job_id, download) if download is not None else []
    if json_out:
        typer.echo(res.model_dump_json(indent=2))
        return
    out = common.out()
    table = Table(show_edge=False, header_style="bold")
    for col in ("path", "type", "format", "size", "records", "role"):
        table.add_column(col, justify="right" if col in ("size", "records") else "left")
    primary = res.primary_output.path if res.primary_output else None
    for f in res.artifacts or []:
        name = f"{f.path} [bold](primary)[/bold]" if f.path == primary else f.path
        records = str(f.record_count) if f.record_count is not None else "-"
        table.add_row(name, f.type, f.format, render.format_bytes(f.size), records, f.role or "-")
    out.print(table if res.artifacts else "No result files.")
    state = "partial results (the job did not succeed)" if res.partial else res.status
    out.print(f"job {res.job_id}: {state}; {len(res.artifacts or [])} files")
    if download is not None:
        out.print(f"downloaded {len(written)} files to {download}")
