"""Wire models of job definitions (a model version with bound inputs, default
parameters and an optional cron schedule); they share ``RunOptions`` with jobs."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from jobyard.api.schemas.base import Strict, attribute_reader
from jobyard.api.schemas.jobs import RunOptions
from jobyard.domain.definitions import JobDefinition
from jobyard.service.definitions import DefinitionSpec


class DefinitionIn(RunOptions):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(max_length=300, description="`name:version` or a version id (pinned).")
    active: bool = True
    schedule: str | None = Field(None, max_length=100, description="Cron expression, UTC.")

    def to_spec(self) -> DefinitionSpec:
        """The spec: every field named as one of ``DefinitionSpec``'s."""
        return DefinitionSpec(
            **_to_spec(self),
            role_bindings=self.bindings(),
            retry_on=tuple(o.value for o in self.retry_on),
        )


#: DefinitionIn's fields that DefinitionSpec takes as they are
_to_spec = attribute_reader(
    n
    for n in DefinitionIn.model_fields
    if n in {f.name for f in fields(DefinitionSpec)} and n not in ("role_bindings", "retry_on")
)


class RunIn(Strict):
    parameters: dict[str, Any] = Field(default_factory=dict)


class DefinitionOut(BaseModel):
    id: str
    name: str
    description: str | None
    model_version_id: str
    role_bindings: list[dict[str, Any]]
    parameters: dict[str, Any]
    environment_id: str | None
    output_folder_id: str | None
    priority: str
    timeout_s: float | None
    active: bool
    schedule: str | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: JobDefinition) -> DefinitionOut:
        return cls(
            id=d.id,
            name=d.name,
            description=d.description,
            model_version_id=d.model_version_id,
            role_bindings=list(d.role_bindings),
            parameters=d.default_parameters,
            environment_id=d.environment_id,
            output_folder_id=d.output_folder_id,
            priority=d.priority.value,
            timeout_s=d.timeout_s,
            active=d.active,
            schedule=d.schedule,
            next_run_at=d.next_run_at,
            last_run_at=d.last_run_at,
            last_job_id=d.last_job_id,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


class DefinitionList(BaseModel):
    items: list[DefinitionOut]
