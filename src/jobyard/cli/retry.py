"""``jobyard retry ID``: run an ended job again as a new job, with changed parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from jobyard.cli import common, exitcodes, parsing, render, resolve, watch
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.cli.models import parsed
from jobyard.sdk.models import Job


def changed_parameters(params: list[str], params_file: Path | None) -> dict[str, Any]:
    """The parameters to change: ``--params-file``'s object, then ``--param`` over it."""
    base = parsed("--params-file", parsing.load_params_file, params_file) if params_file else {}
    return parsed("--param", parsing.parse_params, params, base)


def lineage_text(new: Job, old: Job) -> Text:
    """``retry of OLD (failed) · reason …`` and ``retries of OLD: A, B``."""
    text = Text("  retry of ").append(old.id, style="bold").append(" (")
    text.append_text(render.status_text(old.status)).append(")")
    if old.retry_of:
        text.append(f", itself a retry of {old.retry_of}")
    if new.retry_reason:
        text.append(f" · reason: {new.retry_reason}")
    retries = list(old.retries or [])
    if new.id not in retries:
        retries.append(new.id)  # a replica may answer before it sees the new job
    text.append(f"\n  retries of {old.id}: {', '.join(retries)}")
    text.append(f"\n  parameters: {json.dumps(new.parameters, sort_keys=True) or '-'}")
    return text


def retry(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The ended job to run again.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="K=V",
            help="A changed parameter, merged over the old job's (V is JSON if valid).",
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params-file", metavar="FILE.json", help="Changed parameters from a JSON object."
        ),
    ] = None,
    priority: Annotated[
        str | None, common.priority_option("New priority (default: the old job's).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept with the new job).")] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", help="New running-time limit."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the new job ends.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the new job's id.")
    ] = False,
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run an ended job again as a new job linked to it ("retry of").

    --param and --params-file are merged over the old parameters on the server.

    A parameter cannot be removed; --priority and --timeout replace the old values.

    A job that has not ended is refused with exit code 5 (cancel it first).

    With --wait the exit code tells how the new job ended, as with submit --wait.
    """
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="--timeout")
    changes = changed_parameters(param or [], params_file)
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job = client.retry(
            resolve.job_id(client, job_id),
            parameters=changes or None,
            priority=priority,
            reason=reason,
            timeout_s=timeout,
        )
        if quiet and not json_out:
            typer.echo(job.id)
        elif not json_out:
            out = common.out()
            out.print(render.job_line(job))
            out.print(lineage_text(job, client.get(job.retry_of or job_id)))
        if not wait:
            if json_out:
                typer.echo(job.model_dump_json(indent=2))
            return
        live = not (quiet or json_out) and common.err().is_terminal
        final = watch.follow(
            client,
            job,
            live=live,
            poll_interval=watch.POLL_INTERVAL_S,
            show_output=not (quiet or json_out),
        )
    if json_out:
        typer.echo(final.model_dump_json(indent=2))
    elif not quiet:
        common.out().print(render.final_text(final))
    raise typer.Exit(exitcodes.for_status(final.status))
