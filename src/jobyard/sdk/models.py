"""Client-side models of the ``/v1`` API (see ``docs/api.md``).

They are the SDK's own copy, independent of the server. Unknown fields are kept
(``extra="allow"``) so that a newer server with more fields still parses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Statuses a job does not leave on its own.
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
#: Every status of the API, in lifecycle order.
STATUSES: tuple[str, ...] = (
    "scheduled",
    "queued",
    "starting",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Model):
    """What the job's process tree used."""

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    cpu_time_s: float | None = None


class Job(_Model):
    """A job as the server reports it."""

    id: str
    status: str
    name: str | None = None
    description: str | None = None
    job_type: str | None = None
    priority: str = "normal"
    entrypoint: str | None = None
    argv: list[str] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = None
    scheduled_at: datetime | None = None
    submitted_by: str | None = None
    attempt: int = 0
    exit_code: int | None = None
    error_type: str | None = None
    message: str | None = None
    node_id: str | None = None
    pid: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    queue_time_ms: int | None = None
    elapsed_time_ms: int | None = None
    usage: Usage | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended (succeeded, failed, timed_out or cancelled)."""
        return self.status in TERMINAL_STATUSES


class JobSummary(_Model):
    """Counts of the jobs matching a list's filters except ``status``."""

    total: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


class JobPage(_Model):
    """One page of ``GET /v1/jobs``, newest first."""

    items: list[Job] = Field(default_factory=list)
    next_cursor: str | None = None
    summary: JobSummary = Field(default_factory=JobSummary)


class JobEvent(_Model):
    """One entry of a job's timeline."""

    seq: int
    at: datetime
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    message: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LogChunk(_Model):
    """Part of a job's log and where it sits in the log (byte offsets)."""

    text: str
    offset: int
    next_offset: int
