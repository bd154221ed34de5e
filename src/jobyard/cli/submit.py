"""``jobyard submit``: build a submission from the command line, submit, optionally wait."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from jobyard.cli import common, exitcodes, parsing, render, watch
from jobyard.cli.common import ApiKeyOption, Priority, UrlOption
from jobyard.sdk.models import Job

T = TypeVar("T")

POLL_INTERVAL_S = 0.2  #: first poll interval of ``--wait`` (tests set it to 0)


def _parsed(hint: str, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``; a ``ValueError`` becomes a usage error (exit code 2)."""
    try:
        return parse(*args)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def parse_bindings(values: list[str]) -> list[dict[str, Any]]:
    """``ROLE=folder:NAME`` binds a role to a folder; ``ROLE=VALUE`` to a value (JSON if
    it parses, else the string)."""
    out: list[dict[str, Any]] = []
    for raw in values:
        role, sep, rest = raw.partition("=")
        if not sep or not role:
            raise ValueError(f"expected ROLE=folder:NAME or ROLE=VALUE, got {raw!r}")
        if rest.startswith("folder:"):
            out.append({"role": role, "folder": rest[len("folder:") :]})
        else:
            out.append({"role": role, "value": parsing.parse_params([f"v={rest}"], {})["v"]})
    return out


def check_env_vars(values: list[str]) -> list[str]:
    """``--env`` takes variables (``K=V``, as ``docker run -e`` does); a bare ``NAME`` is
    most likely an environment configuration meant for ``--environment``."""
    for value in values:
        if "=" not in value:
            raise ValueError(
                f"expected K=V (an environment variable), got {value!r}; to run in the "
                f"environment configuration {value!r}, use --environment {value}"
            )
    return values


def check_environment(value: str | None) -> str | None:
    """``--environment`` takes the NAME of a registered environment configuration."""
    if value is not None and "=" in value:
        raise ValueError(
            f"expected the NAME of an environment configuration, got {value!r}; "
            f"to set an environment variable, use --env {value}"
        )
    return value


def build_submission(
    argv: list[str] | None,
    command: str | None,
    *,
    params: list[str],
    params_file: Path | None,
    env: list[str],
    metadata: list[str],
    timeout: float | None,
    at: str | None,
    model: str | None = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :meth:`Client.submit` from the command line."""
    if argv and command is not None:
        raise typer.BadParameter("give -c/--command or CMD after --, not both", param_hint="CMD")
    if model is not None and (argv or command is not None):
        raise typer.BadParameter("give --model or a command, not both", param_hint="--model")
    if not argv and command is None and model is None:
        raise typer.BadParameter(
            "a command is required: -- CMD [ARG…], -c/--command 'shell string', or --model",
            param_hint="CMD",
        )
    pairs = _parsed("--env", check_env_vars, env)
    environment = _parsed("--environment", check_environment, environment)
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be greater than 0", param_hint="--timeout")
    base = _parsed("--params-file", parsing.load_params_file, params_file) if params_file else {}
    entrypoint = command if command is not None else (list(argv) if argv else None)
    return {
        "entrypoint": entrypoint,
        "model": model,
        "environment": environment,
        "parameters": _parsed("--param", parsing.parse_params, params, base) or None,
        "env": _parsed("--env", parsing.parse_pairs, pairs, "--env") or None,
        "metadata": _parsed("--metadata", parsing.parse_pairs, metadata, "--metadata") or None,
        "timeout_s": timeout,
        "scheduled_at": _parsed("--at", parsing.parse_time, at) if at is not None else None,
    }


def submit(
    argv: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CMD", help="The command as an argv (no shell).", show_default=False
        ),
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", "-c", help="A shell command string (/bin/sh -c).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Job type label.")] = None,
    priority: Annotated[str, common.priority_option("Priority.")] = Priority.normal.value,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="K=V", help="A parameter; V is parsed as JSON if valid."),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option("--params-file", metavar="FILE.json", help="Parameters from a JSON object."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", metavar="K=V", help="An environment variable of the job."),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            metavar="NAME",
            help="Run in this environment configuration (jobyard envs list).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME:VERSION", help="Run this model version.")
    ] = None,
    input_folder: Annotated[
        str | None, typer.Option("--input-folder", metavar="FOLDER", help="Read-only input data.")
    ] = None,
    output_folder: Annotated[
        str | None,
        typer.Option("--output-folder", metavar="FOLDER", help="Where outputs go (must exist)."),
    ] = None,
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind", metavar="ROLE=folder:NAME|ROLE=VALUE", help="Bind a model input role."
        ),
    ] = None,
    continue_on_error: Annotated[
        bool,
        typer.Option("--continue-on-error", help="Notebooks: run the other cells after a failure."),
    ] = False,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", metavar="K=V", help="Metadata label.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Running-time limit.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", metavar="ISO-TIME", help="Start at this time.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Submit at most once per key.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until the job ends, printing its output as it comes (a live progress "
            "line below it on a terminal).",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the job id (not its output).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit a job: `jobyard submit [OPTIONS] -- CMD [ARG…]` or `-c "shell string"`.

    With --wait the exit code tells how the job ended: 0 succeeded, 1 failed,
    3 timed out, 4 cancelled.
    """
    kwargs = build_submission(
        argv,
        command,
        params=param or [],
        params_file=params_file,
        env=env or [],
        metadata=metadata or [],
        timeout=timeout,
        at=at,
        model=model,
        environment=environment,
    )
    bindings = _parsed("--bind", parse_bindings, bind or [])
    with common.handle_errors(), common.make_client(url, api_key) as client:
        job = client.submit(
            input_folder=input_folder,
            output_folder=output_folder,
            role_bindings=bindings or None,
            continue_on_error=continue_on_error,
            name=name,
            description=description,
            job_type=job_type,
            priority=priority,
            idempotency_key=idempotency_key,
            **kwargs,
        )
        if not wait:
            _print_submitted(job, quiet=quiet, json_out=json_out)
            return
        if quiet and not json_out:
            typer.echo(job.id)
        final = watch.follow(
            client,
            job,
            live=not (quiet or json_out) and common.err().is_terminal,
            poll_interval=POLL_INTERVAL_S,
            show_output=not (quiet or json_out),
        )
    if json_out:
        typer.echo(final.model_dump_json(indent=2))
    elif not quiet:
        common.out().print(render.final_text(final))
    raise typer.Exit(exitcodes.for_status(final.status))


def _print_submitted(job: Job, *, quiet: bool, json_out: bool) -> None:
    if json_out:
        typer.echo(job.model_dump_json(indent=2))
    elif quiet:
        typer.echo(job.id)
    else:
        common.out().print(render.job_line(job))
