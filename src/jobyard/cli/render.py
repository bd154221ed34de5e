"""Rich rendering of jobs: tables, panels, durations and status colours."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobyard.sdk.models import STATUSES, Job, JobSummary

STATUS_STYLES: dict[str, str] = {
    "scheduled": "magenta",
    "queued": "cyan",
    "starting": "blue",
    "running": "bold blue",
    "cancelling": "yellow",
    "succeeded": "bold green",
    "failed": "bold red",
    "timed_out": "bold red",
    "cancelled": "yellow",
}


def status_text(status: str) -> Text:
    """The status in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_duration(ms: float | None) -> str:
    """``48ms``, ``1.2s``, ``3m 05s``, ``2h 03m``; ``-`` when unknown."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def job_duration_ms(job: Job, now: datetime | None = None) -> float | None:
    """Running time: the server's ``elapsed_time_ms``, else measured from ``started_at``."""
    if job.elapsed_time_ms is not None:
        return job.elapsed_time_ms
    if job.started_at is None:
        return None
    end = job.ended_at or now or datetime.now(UTC)
    return max(0.0, (end - job.started_at).total_seconds() * 1000)


def format_time(value: datetime | None) -> str:
    """A time in the local timezone, to the second; ``-`` when unset."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _command(job: Job) -> str:
    if job.argv is not None:
        return json.dumps(job.argv)
    if job.entrypoint is None and (job.model or job.model_version_id):
        return "the model's (see model)"
    return job.entrypoint or "-"


def _named(name: str | None, ident: str | None) -> str:
    """``q3-input`` or, when the name is not known, the id."""
    return name or ident or "-"


def _binding(b: dict[str, Any]) -> str:
    role = str(b.get("role"))
    if "folder_id" in b or "folder" in b:
        return f"{role} = folder {_named(b.get('folder'), b.get('folder_id'))}"
    return f"{role} = {json.dumps(b.get('value'))}"


def _model_rows(job: Job) -> list[tuple[str, RenderableType]]:
    """What a model job uses (nothing for a plain command job)."""
    rows: list[tuple[str, RenderableType]] = []
    if job.model or job.model_version_id:
        rows.append(("model", _named(job.model, job.model_version_id)))
    if job.environment or job.environment_id:
        rows.append(("environment", _named(job.environment, job.environment_id)))
    if job.input_folder or job.input_folder_id:
        rows.append(("input folder", _named(job.input_folder, job.input_folder_id)))
    if job.output_folder or job.output_folder_id:
        rows.append(("output folder", _named(job.output_folder, job.output_folder_id)))
    if job.role_bindings:
        rows.append(("role bindings", "\n".join(_binding(b) for b in job.role_bindings)))
    return rows


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value) if value else "-"
    return str(value)


def job_panel(job: Job) -> Panel:
    """All the fields of one job, as a two-column table in a panel."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, RenderableType]] = [
        ("id", job.id),
        ("name", _value(job.name)),
        ("status", status_text(job.status)),
        ("priority", job.priority),
        ("type", _value(job.job_type)),
        ("description", _value(job.description)),
        ("command", _command(job)),
        *_model_rows(job),
        ("parameters", _value(job.parameters)),
        ("metadata", _value(job.metadata)),
        ("env vars", ", ".join(sorted(job.env)) or "-"),  # names only: values may be secrets
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s is not None else "-"),
        ("submitted by", _value(job.submitted_by)),
        ("attempt", str(job.attempt)),
        ("exit code", _value(job.exit_code)),
        ("error type", _value(job.error_type)),
        ("created", format_time(job.created_at)),
        ("scheduled", format_time(job.scheduled_at)),
        ("queued", format_time(job.queued_at)),
        ("started", format_time(job.started_at)),
        ("ended", format_time(job.ended_at)),
        ("queue time", format_duration(job.queue_time_ms)),
        ("duration", format_duration(job_duration_ms(job))),
        ("node / pid", f"{_value(job.node_id)} / {_value(job.pid)}"),
    ]
    if job.usage is not None:
        u = job.usage
        cpu = f"{u.cpu_time_s:.2f}s" if u.cpu_time_s is not None else "-"
        rows.append(("usage", f"cpu {cpu}, peak rss {format_bytes(u.peak_rss_bytes)}"))
    if job.retry_of:
        reason = f" ({job.retry_reason})" if job.retry_reason else ""
        rows.append(("retry of", f"{job.retry_of}{reason}"))
    if job.retries:
        rows.append(("retries", "\n".join(job.retries)))
    for label, value in rows:
        table.add_row(label, value)
    parts: list[RenderableType] = [table]
    if job.message:
        parts.append(Text("\n" + job.message, style="dim"))
    title = Text.assemble(("job ", "bold"), (job.name or job.id, "bold"))
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def jobs_table(jobs: Iterable[Job]) -> Table:
    """One row per job: id, name, status, priority, created, duration, exit code."""
    table = Table(show_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("priority")
    table.add_column("created", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("exit", justify="right")
    now = datetime.now(UTC)
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            status_text(job.status),
            job.priority,
            format_time(job.created_at),
            format_duration(job_duration_ms(job, now)),
            _value(job.exit_code),
        )
    return table


def summary_text(summary: JobSummary) -> Text:
    """``12 jobs: 2 queued · 1 running · 9 succeeded`` in lifecycle order."""
    order = {s: i for i, s in enumerate(STATUSES)}
    counts = sorted(summary.by_status.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    text = Text(f"{summary.total} job{'s' if summary.total != 1 else ''}", style="bold")
    for i, (status, count) in enumerate(c for c in counts if c[1]):
        text.append(": " if i == 0 else " · ")
        text.append(f"{count} ")
        text.append(status_text(status))
    return text


def job_line(job: Job) -> Text:
    """``job 0b6c… queued``."""
    return Text.assemble("job ", (job.id, "bold"), " ", status_text(job.status))


def final_text(job: Job) -> Text:
    """``job 0b6c… succeeded · exit code 0 · 1.2s`` and the job's message below."""
    text = job_line(job)
    if job.exit_code is not None:
        text.append(f" · exit code {job.exit_code}")
    duration = job_duration_ms(job)
    if duration is not None:
        text.append(f" · {format_duration(duration)}")
    if job.message:
        text.append("\n" + job.message, style="dim")
    return text
