"""Presentation helpers for the templates: times, durations, sizes, badges. Pure
functions of the values they are given (no business rules)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from jobyard.domain.jobs import Job
from jobyard.domain.states import ACTIVE, PENDING, TERMINAL, JobState

BADGE = {
    JobState.SUCCEEDED: "ok",
    JobState.FAILED: "bad",
    JobState.TIMED_OUT: "bad",
    JobState.CANCELLED: "muted",
    JobState.CANCELLING: "warn",
    JobState.RUNNING: "run",
    JobState.STARTING: "run",
    JobState.QUEUED: "wait",
    JobState.SCHEDULED: "wait",
}


def when(value: datetime | None) -> Markup:
    """A ``<time>`` element: UTC text (the page's script shows it in the browser's zone),
    the UTC time on hover."""
    if value is None:
        return Markup('<span class="none">—</span>')
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(utc.isoformat(), text, text)


def human_duration(seconds: float | None) -> str:
    """``950 ms``, ``42 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 2 h``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def job_duration(job: Job, now: datetime) -> str:
    """Running time (so far, for a running job)."""
    if job.started_at is None:
        return "—"
    end = job.ended_at or now
    return human_duration((end - job.started_at).total_seconds())


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


#: one badge per state, made once (the state names and classes are constants)
_BADGES = {
    s: Markup(  # noqa: S704
        f'<span class="badge {BADGE[s]}" data-status="{s.value}">{s.value.replace("_", " ")}</span>'
    )
    for s in JobState
}


def badge(state: JobState | str) -> Markup:
    return _BADGES[JobState(state)]


def what(job: Job) -> str:
    """What the job runs: its model version or its command."""
    if job.spec.model_version_id:
        return f"model {job.spec.model_version_id}"
    if job.spec.argv:
        return " ".join(job.spec.argv)
    return job.spec.entrypoint or ""


def eta(job: Job, now: datetime) -> str | None:
    """Remaining time from the reported percent and the running time so far."""
    pct = job.tracking.progress_percent
    if job.state not in ACTIVE or job.started_at is None or not pct or pct >= 100:
        return None
    elapsed = (now - job.started_at).total_seconds()
    return human_duration(elapsed * (100 - pct) / pct)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def short(text: str | None, n: int = 80) -> str:
    if not text:
        return ""
    return text if len(text) <= n else text[: n - 1] + "…"


def is_terminal(state: JobState) -> bool:
    return state in TERMINAL


def is_pending(state: JobState) -> bool:
    return state in PENDING


def install_filters(env: Any) -> None:
    env.filters.update(
        when=when,
        duration=human_duration,
        bytes=human_bytes,
        badge=badge,
        pretty=pretty_json,
        short=short,
    )
    env.globals.update(
        job_duration=job_duration,
        what=what,
        eta=eta,
        is_terminal=is_terminal,
        is_pending=is_pending,
        escape=escape,
    )
