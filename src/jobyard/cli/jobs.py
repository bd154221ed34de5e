"""The job commands besides ``submit``: ``status``, ``list``, ``logs`` and ``cancel``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from jobyard.cli import common, exitcodes, output, parsing, render, resolve
from jobyard.cli import watch as jobwatch
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.sdk.models import JobPage


def status(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id (or its first characters).")],
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Follow the job until it ends (live progress on stderr); the exit code "
            "tells how it ended, as with submit --wait.",
        ),
    ] = False,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show one job; with --watch, follow it until it ends."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job = client.get(resolve.job_id(client, job_id))
        if watch and not job.is_terminal:
            live = not json_out and common.err().is_terminal
            job = jobwatch.follow(client, job, live=live, poll_interval=jobwatch.POLL_INTERVAL_S)
    if json_out:
        typer.echo(job.model_dump_json(indent=2))
    elif watch:
        common.out().print(render.final_text(job))
    else:
        common.out().print(render.job_panel(job))
    if watch:
        raise typer.Exit(exitcodes.for_status(job.status))


def list_jobs(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only these statuses (repeat or comma-separate)."),
    ] = None,
    priority: Annotated[str | None, common.priority_option("Only this priority.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    submitted_by: Annotated[str | None, typer.Option(help="Only jobs submitted by.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 50,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every page, not only the first.")
    ] = False,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List jobs, newest first, with counts by status."""
    filters: dict[str, Any] = {
        "status": parsing.split_csv(status or []) or None,
        "priority": priority,
        "job_type": job_type,
        "submitted_by": submitted_by,
        "limit": limit,
    }
    with common.handle_errors(), common.make_client(url, api_key) as client:
        page = client.list(**filters)
        items = list(page.items)
        cursor = page.next_cursor
        while all_pages and cursor:
            more = client.list(cursor=cursor, **filters)
            items.extend(more.items)
            cursor = more.next_cursor if more.next_cursor != cursor else None
    result = JobPage(items=items, next_cursor=cursor, summary=page.summary)
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
        return
    out = common.out()
    if items:
        out.print(render.jobs_table(items))
    else:
        out.print("No jobs.")
    summary = render.summary_text(result.summary)
    if status:
        summary = Text(f"{len(items)} shown; all statuses: ").append_text(summary)
    out.print(summary)
    if cursor:
        out.print(f"[dim]showing {len(items)}; more with --all or --limit[/dim]")


def logs(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id (or its first characters).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
    tail: Annotated[int | None, typer.Option(min=0, help="Only the last N lines.")] = None,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Also the job's marker lines (::jobyard::{…}), as logged."),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print a job's output (stdout and stderr), without its marker lines unless --raw."""
    lines = output.LineFilter(raw=raw)
    try:
        with common.handle_errors(), common.make_client(url, api_key) as client:
            job_id = resolve.job_id(client, job_id)
            offset = 0
            if tail is not None or not follow:
                chunk = client.read_logs(job_id, tail=tail)
                _write(lines.feed(chunk.text))
                offset = chunk.next_offset
            if follow:
                for piece in client.follow_logs(job_id, offset=offset):
                    _write(lines.feed(piece))
        _write(lines.flush())
    except KeyboardInterrupt:
        raise typer.Exit(exitcodes.INTERRUPTED) from None


def _write(text: str) -> None:
    """Log text as is (``typer.echo`` would strip colour codes when piped)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id (or its first characters).")],
    force: Annotated[bool, typer.Option("--force", help="Kill at once (SIGKILL).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the job's events).")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a job; a running job goes to `cancelling`, then `cancelled`."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job = client.cancel(resolve.job_id(client, job_id), force=force, reason=reason)
    common.out().print(render.job_line(job))
