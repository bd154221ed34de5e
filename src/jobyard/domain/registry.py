"""Models, immutable model versions and environment configurations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ModelKind(StrEnum):
    COMMAND = "command"  #: ``entrypoint`` is a shell command run in the unpacked artifact
    PYTHON = "python"  #: ``entrypoint`` is a script path inside the artifact (default: the file)
    NOTEBOOK = "notebook"  #: a Jupyter ``.ipynb``
    ZEPPELIN = "zeppelin"  #: a Zeppelin note (``note.json`` / ``.zpln``)


@dataclass(frozen=True, kw_only=True)
class InputRole:
    role: str
    kind: str | None = None  #: e.g. csv, sensor, folder
    metric: str | None = None
    required: bool = True


@dataclass(frozen=True, kw_only=True)
class OutputRole:
    role: str
    metric: str | None = None
    unit: str | None = None
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Model:
    id: str
    tenant_id: str
    name: str
    description: str | None
    expected_interval_minutes: int | None
    retention_hours: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """Immutable once created."""

    id: str
    tenant_id: str
    model_id: str
    model_name: str
    version: str
    description: str | None
    kind: ModelKind
    entrypoint: str | None
    artifact_sha256: str | None
    artifact_name: str | None
    artifact_size: int | None
    artifact_is_archive: bool
    input_roles: tuple[InputRole, ...]
    output_roles: tuple[OutputRole, ...]
    parameters_schema: dict[str, Any] | None
    default_parameters: dict[str, Any]
    default_environment_id: str | None
    deprecated: bool
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.model_name}:{self.version}"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """An environment configuration: what a job's process gets besides the model."""

    id: str
    tenant_id: str
    name: str
    description: str | None
    env_vars: dict[str, str] = field(default_factory=dict)
    pip_requirements: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  #: relative path → text content
    cpu_slots: int = 1
    memory_limit_mb: int | None = None
    max_concurrent_jobs: int = 1
    network: str = "full"  #: "full": the host's network; "none": a loopback interface only
    created_at: datetime
    updated_at: datetime
