"""The live progress line of ``submit --wait`` / ``status --watch`` and the job output
shown with it (issue 14): rendered as the terminal would show it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from jobyard.cli import watch
from jobyard.cli.output import LineFilter
from jobyard.markers import format_marker
from jobyard.sdk.models import Job
from jobyard.sdk.stream import StreamEvent

JOB_ID = "5b975f0b-9e9b-4c51-a357-81ea3b655917"


def _rendered(width: int, *events: StreamEvent) -> tuple[str, watch.JobDisplay]:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress = watch.make_progress(console)
    display = watch.JobDisplay(progress, Job(id=JOB_ID, status="queued"))
    for event in events:
        display.on_event(event)
    console.print(progress.get_renderable())
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return out, display


def _state(to: str) -> StreamEvent:
    return StreamEvent("state", {"to_state": to})


def _setup(stage: str) -> StreamEvent:
    return StreamEvent("setup", {"kind": "setup", "message": stage, "data": {"stage": stage}})


def _progress(percent: float, eta: datetime | None = None) -> StreamEvent:
    data = {"percent": percent, "eta": eta.isoformat() if eta else None}
    return StreamEvent("progress", {"data": data})


def test_setup_stage_shown_while_starting_then_gone() -> None:
    out, display = _rendered(120, _state("starting"), _setup("creating environment py-small"))
    assert "starting · creating environment py-small" in out, out
    display.on_event(_state("running"))
    assert display.stage is None and "creating" not in display.description()


def test_the_progress_line_fits_80_columns() -> None:
    eta = datetime.now(UTC) + timedelta(minutes=3)
    out, _ = _rendered(
        80,
        _state("starting"),
        _setup("copying input folder q3-input-with-a-rather-long-name-for-the-quarter"),
        _progress(40, eta),
    )
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 1, out
    assert len(lines[0]) <= 80, out
    assert f"job {JOB_ID[:8]}" in lines[0] and "40%" in lines[0], out


def test_first_eta_waits_for_a_rate() -> None:
    eta = datetime.now(UTC) + timedelta(minutes=3)
    out, display = _rendered(120, _state("running"), _progress(1, eta))
    assert "eta" not in out, out  # one report: no rate yet
    assert display.first_progress is not None
    started, _ = display.first_progress
    display.first_progress = (started - watch.ETA_AFTER_S, 1)  # as if reported 3 s ago
    display.on_event(_progress(20, eta))
    task = display.progress.tasks[0]
    assert task.fields["eta_ready"] is True


def test_line_filter_drops_markers_and_keeps_partial_lines() -> None:
    marker = format_marker("progress", percent=5)
    lines = LineFilter()
    assert lines.feed("one\n" + marker[:10]) == "one\n"
    assert lines.feed(marker[10:] + "\ntwo") == ""
    assert lines.feed("\n::jobyard::not json\n") == "two\n::jobyard::not json\n"
    assert lines.feed("tail") == ""
    assert lines.flush() == "tail"
    raw = LineFilter(raw=True)
    assert raw.feed(marker + "\n") == marker + "\n"
