"""Job definitions: a model version with its inputs bound, default parameters and an
optional cron schedule (the Prediction API's "jobs")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobyard.domain.priorities import Priority


@dataclass(frozen=True, kw_only=True)
class JobDefinition:
    id: str
    tenant_id: str
    name: str
    description: str | None
    model_version_id: str
    role_bindings: tuple[dict[str, Any], ...]  #: {"role", "folder_id" | "value"}
    default_parameters: dict[str, Any] = field(default_factory=dict)
    environment_id: str | None = None
    output_folder_id: str | None = None
    priority: Priority = Priority.NORMAL
    timeout_s: float | None = None
    active: bool = True
    schedule: str | None = None  #: cron expression (UTC)
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ("failed", "timed_out", "node_lost")
    notifications: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
