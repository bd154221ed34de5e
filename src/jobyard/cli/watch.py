"""Following a job until it ends (``submit --wait``, ``status --watch``), with a live
progress display on stderr driven by the job's event stream, and the job's output above
it (as ``ray job submit`` shows it)."""

from __future__ import annotations

import sys
import time
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
from rich.table import Column
from rich.text import Text

from jobyard.cli import common, exitcodes, output, render
from jobyard.sdk.client import Client
from jobyard.sdk.models import Job
from jobyard.sdk.stream import StreamEvent

POLL_INTERVAL_S = 0.2  #: first poll interval when the stream is unavailable
#: an ETA is shown once the job's progress has risen over at least this long: the first
#: reports give no rate worth showing
ETA_AFTER_S = 3.0
SHORT_ID = 8  #: characters of the job id on the progress line (it must fit 80 columns)


class EtaColumn(ProgressColumn):
    """``eta 1m 05s`` from the ``eta`` the job reported (a time), blank without one."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        if not isinstance(eta, datetime) or not task.fields.get("eta_ready"):
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
        self.setup_stage = False  #: the stage is the server's setup step, not the job's
        self.first_progress: tuple[float, float] | None = None  #: (monotonic time, percent)
        self.task = progress.add_task(self.description(), total=None, eta=None, eta_ready=False)

    def description(self) -> str:
        style = render.STATUS_STYLES.get(self.status) or "default"
        text = f"job {escape(self.job_id[:SHORT_ID])} [{style}]{escape(self.status)}[/]"
        return f"{text} · {escape(self.stage)}" if self.stage else text

    def output(self, text: str) -> None:
        """The job's output, above the progress line (stdout when it is not the terminal)."""
        if not text:
            return
        if sys.stdout.isatty():
            self.progress.console.print(text, end="", markup=False, highlight=False)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def on_event(self, event: StreamEvent) -> None:
        """Apply a ``state``, ``setup`` or ``progress`` event (other kinds are ignored)."""
        if event.kind == "state" and event.to_state:
            self.status = event.to_state
            if self.status == "queued":  # again (a retry): what was reported is stale
                self.stage = None
                self.first_progress = None
                self._indeterminate()
                self.progress.update(self.task, completed=0, eta=None, eta_ready=False)
            elif self.setup_stage and self.status != "starting":
                self.stage, self.setup_stage = None, False
        elif event.kind == "setup":
            data = event.data.get("data")
            stage = data.get("stage") if isinstance(data, dict) else None
            if isinstance(stage, str) and stage:
                self.stage, self.setup_stage = stage, True
        elif event.kind == "progress":
            data = event.data.get("data")
            data = data if isinstance(data, dict) else {}
            stage = data.get("stage")
            if isinstance(stage, str) and stage:
                self.stage, self.setup_stage = stage, False
            percent = _percent(data)
            if percent is not None:
                self.progress.update(self.task, total=100.0, completed=percent)
                self.progress.update(self.task, eta_ready=self._rate_known(percent))
            self.progress.update(self.task, eta=_time(data.get("eta")))
        self.progress.update(self.task, description=self.description())

    def _rate_known(self, percent: float) -> bool:
        """Whether the progress has risen over :data:`ETA_AFTER_S` (an ETA from the first
        report alone would be a guess)."""
        now = time.monotonic()
        if self.first_progress is None:
            self.first_progress = (now, percent)
            return False
        since, first = self.first_progress
        return now - since >= ETA_AFTER_S and percent > first

    def _indeterminate(self) -> None:
        for task in self.progress.tasks:  # Progress.update cannot set the total to None
            if task.id == self.task:
                task.total = None


def make_progress(console: Console) -> Progress:
    """The live display on ``console`` (cleared when it ends): one line that fits the
    terminal, the description cut short (…) before anything wraps."""
    columns = (
        SpinnerColumn(),
        TextColumn(
            "{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=12),
        ),
        BarColumn(bar_width=16),
        TaskProgressColumn(),
        EtaColumn(),
        TimeElapsedColumn(),
    )
    # the job's output goes to stdout itself (a file stays a file)
    return Progress(*columns, console=console, transient=True, expand=True, redirect_stdout=False)


def _print(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def follow(
    client: Client,
    job: Job,
    *,
    live: bool,
    poll_interval: float = POLL_INTERVAL_S,
    show_output: bool = False,
) -> Job:
    """Wait until the job has ended and return it: the job's event stream, or polling
    when the server offers none; with ``live``, a progress display on stderr; with
    ``show_output``, the job's output (without marker lines) on stdout as it comes.
    Ctrl-C stops waiting (exit code 130), not the job."""
    lines = output.LineFilter()
    kinds = ["state", "log"] if show_output else ["state"]

    def text_of(event: StreamEvent) -> str:
        text = event.data.get("text")
        return lines.feed(text) if isinstance(text, str) else ""

    try:
        if not live:

            def print_output(event: StreamEvent) -> None:
                if event.kind == "log":
                    _print(text_of(event))

            final = client.watch(
                job.id,
                print_output if show_output else None,
                kinds=kinds,
                poll_interval=poll_interval,
            )
            _print(lines.flush())
            return final
        with make_progress(common.err()) as progress:
            display = JobDisplay(progress, job)

            def on_event(event: StreamEvent) -> None:
                if event.kind == "log":
                    display.output(text_of(event))
                else:
                    display.on_event(event)

            final = client.watch(
                job.id,
                on_event,
                kinds=[*kinds, "progress", "setup"],
                poll_interval=poll_interval,
            )
            display.output(lines.flush())
            return final
    except KeyboardInterrupt:
        typer.echo(
            f"stopped waiting; job {job.id} keeps running (jobyard cancel {job.id} stops it)",
            err=True,
        )
        raise typer.Exit(exitcodes.INTERRUPTED) from None
