"""Following a job until it ends (``submit --wait``, ``status --watch``), with a live
progress display on stderr driven by the job's event stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from jobyard.cli import common, exitcodes, render
from jobyard.sdk.client import Client
from jobyard.sdk.models import Job
from jobyard.sdk.stream import StreamEvent, watch_job

POLL_INTERVAL_S = 0.2  #: first poll interval when the stream is unavailable


class EtaColumn(ProgressColumn):
    """``eta 1m 05s`` from the ``eta`` the job reported (a time), blank without one."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        if not isinstance(eta, datetime):
            return Text("")
        left_ms = max(0.0, (eta - datetime.now(UTC)).total_seconds() * 1000)
        return Text(f"eta {render.format_duration(left_ms)}", style="progress.remaining")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _percent(data: dict[str, Any]) -> float | None:
    """The reported percent, else records processed of the total; None when unknown."""
    percent = data.get("percent")
    if isinstance(percent, int | float) and not isinstance(percent, bool):
        return min(100.0, max(0.0, float(percent)))
    done, total = data.get("records_processed"), data.get("total_records")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return min(100.0, 100.0 * done / total)
    return None


class JobDisplay:
    """One progress task: ``job <id> <status> · <stage>``, a bar when the job reports a
    percent (a pulse otherwise), the ETA and the elapsed time."""

    def __init__(self, progress: Progress, job: Job) -> None:
        self.progress = progress
        self.job_id = job.id
        self.status = job.status
        self.stage: str | None = None
        self.task = progress.add_task(self.description(), total=None, eta=None)

    def description(self) -> str:
        style = render.STATUS_STYLES.get(self.status) or "default"
        text = f"job {escape(self.job_id)} [{style}]{escape(self.status)}[/]"
        return f"{text} · {escape(self.stage)}" if self.stage else text

    def on_event(self, event: StreamEvent) -> None:
        """Apply a ``state`` or ``progress`` event (other kinds are ignored)."""
        if event.kind == "state" and event.to_state:
            self.status = event.to_state
            if self.status == "queued":  # again (a retry): what was reported is stale
                self.stage = None
                self._indeterminate()
                self.progress.update(self.task, completed=0, eta=None)
        elif event.kind == "progress":
            data = event.data.get("data")
            data = data if isinstance(data, dict) else {}
            stage = data.get("stage")
            if isinstance(stage, str) and stage:
                self.stage = stage
            percent = _percent(data)
            if percent is not None:
                self.progress.update(self.task, total=100.0, completed=percent)
            self.progress.update(self.task, eta=_time(data.get("eta")))
        self.progress.update(self.task, description=self.description())

    def _indeterminate(self) -> None:
        for task in self.progress.tasks:  # Progress.update cannot set the total to None
            if task.id == self.task:
                task.total = None


def make_progress(console: Console) -> Progress:
    """The live display on ``console`` (cleared when it ends)."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        EtaColumn(),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, transient=True)


def follow(client: Client, job: Job, *, live: bool, poll_interval: float = POLL_INTERVAL_S) -> Job:
    """Wait until the job has ended and return it: the job's event stream, or polling
    when the server offers none; with ``live``, a progress display on stderr. Ctrl-C
    stops waiting (exit code 130), not the job."""
    try:
        if not live:
            return watch_job(client, job.id, kinds=["state"], poll_interval=poll_interval)
        with make_progress(common.err()) as progress:
            display = JobDisplay(progress, job)
            return watch_job(
                client,
                job.id,
                display.on_event,
                kinds=["state", "progress"],
                poll_interval=poll_interval,
            )
    except KeyboardInterrupt:
        typer.echo(
            f"stopped waiting; job {job.id} keeps running (jobyard cancel {job.id} stops it)",
            err=True,
        )
        raise typer.Exit(exitcodes.INTERRUPTED) from None
