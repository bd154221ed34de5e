"""Wire models of ``/v1/models`` and ``/v1/environments`` (never domain objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from jobyard.api.bounds import Int32
from jobyard.api.schemas.base import Strict
from jobyard.domain.registry import (
    Environment,
    InputRole,
    Model,
    ModelKind,
    ModelVersion,
    OutputRole,
)
from jobyard.service.environments import EnvironmentSpec
from jobyard.service.model_specs import VersionSpec

_TEXT = 10_000


# ---- models --------------------------------------------------------------------------
class ModelCreate(Strict):
    name: str = Field(description="Unique within the tenant: letters, digits, '.', '_', '-'.")
    description: str | None = Field(None, max_length=_TEXT)
    expected_interval_minutes: Int32 | None = Field(
        None, description="Monitoring hint: how often the model is expected to run."
    )
    retention_hours: Int32 | None = Field(None, description="How long its results are kept.")


class ModelUpdate(Strict):
    """Only the fields given change; ``null`` clears one."""

    description: str | None = Field(None, max_length=_TEXT)
    expected_interval_minutes: Int32 | None = None
    retention_hours: Int32 | None = None


class VersionInfo(BaseModel):
    id: str
    version: str
    kind: str
    created_at: datetime
    deprecated: bool


class ModelOut(BaseModel):
    id: str
    name: str
    description: str | None
    expected_interval_minutes: int | None
    retention_hours: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: Model) -> ModelOut:
        return cls(
            id=m.id,
            name=m.name,
            description=m.description,
            expected_interval_minutes=m.expected_interval_minutes,
            retention_hours=m.retention_hours,
            created_at=m.created_at,
            updated_at=m.updated_at,
        )


class ModelDetail(ModelOut):
    versions: list[VersionInfo] = Field(description="Newest first.")

    @classmethod
    def with_versions(cls, m: Model, versions: list[ModelVersion]) -> ModelDetail:
        infos = [
            VersionInfo(
                id=v.id,
                version=v.version,
                kind=v.kind.value,
                created_at=v.created_at,
                deprecated=v.deprecated,
            )
            for v in versions
        ]
        return cls(**ModelOut.of(m).model_dump(), versions=infos)


class ModelList(BaseModel):
    items: list[ModelOut]


# ---- versions ------------------------------------------------------------------------
class InputRoleIn(Strict):
    role: str
    kind: str | None = Field(
        None,
        validation_alias=AliasChoices("kind", "input_kind"),
        description="What is bound to it, e.g. csv, sensor, folder.",
    )
    metric: str | None = None
    required: bool = True


class OutputRoleIn(Strict):
    role: str
    metric: str | None = None
    unit: str | None = None
    required: bool = False


class VersionCreate(Strict):
    """A new, immutable model version. With ``multipart/form-data`` this object is the
    ``spec`` field and the artifact is the ``artifact`` file."""

    version: str = Field(description="1-100 characters: letters, digits, '.', '_', '+', '-'.")
    kind: ModelKind | None = Field(
        None,
        description="command, python, notebook or zeppelin; default: inferred from the "
        "artifact's name (for an archive: the entrypoint's), else command.",
    )
    entrypoint: str | None = Field(
        None,
        description="command: the shell command; python/notebook/zeppelin in a zip "
        "archive: the path of the file to run inside it.",
    )
    description: str | None = Field(None, max_length=_TEXT)
    input_roles: list[InputRoleIn] = Field(default_factory=list)
    output_roles: list[OutputRoleIn] = Field(default_factory=list)
    parameters_schema: dict[str, Any] | None = Field(
        None, description="A JSON Schema the job parameters must satisfy."
    )
    default_parameters: dict[str, Any] = Field(default_factory=dict)
    default_environment: str | None = Field(None, description="Environment id or name.")

    def to_spec(self) -> VersionSpec:
        return VersionSpec(
            version=self.version,
            kind=self.kind,
            entrypoint=self.entrypoint,
            description=self.description,
            input_roles=tuple(
                InputRole(role=r.role, kind=r.kind, metric=r.metric, required=r.required)
                for r in self.input_roles
            ),
            output_roles=tuple(
                OutputRole(role=r.role, metric=r.metric, unit=r.unit, required=r.required)
                for r in self.output_roles
            ),
            parameters_schema=self.parameters_schema,
            default_parameters=self.default_parameters,
            default_environment=self.default_environment,
        )


class InputRoleOut(BaseModel):
    role: str
    kind: str | None
    metric: str | None
    required: bool


class OutputRoleOut(BaseModel):
    role: str
    metric: str | None
    unit: str | None
    required: bool


class ArtifactOut(BaseModel):
    name: str
    sha256: str
    size: int
    archive: bool


class VersionOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    model: str = Field(description="The model's name.")
    model_id: str
    ref: str = Field(description="NAME:VERSION")
    version: str
    kind: str
    entrypoint: str | None
    description: str | None
    artifact: ArtifactOut | None
    input_roles: list[InputRoleOut]
    output_roles: list[OutputRoleOut]
    parameters_schema: dict[str, Any] | None
    default_parameters: dict[str, Any]
    default_environment: str | None = Field(description="Environment id.")
    deprecated: bool
    created_at: datetime

    @classmethod
    def of(cls, v: ModelVersion) -> VersionOut:
        artifact = None
        if v.artifact_sha256 is not None:
            artifact = ArtifactOut(
                name=v.artifact_name or "artifact",
                sha256=v.artifact_sha256,
                size=v.artifact_size or 0,
                archive=v.artifact_is_archive,
            )
        return cls(
            id=v.id,
            model=v.model_name,
            model_id=v.model_id,
            ref=v.ref,
            version=v.version,
            kind=v.kind.value,
            entrypoint=v.entrypoint,
            description=v.description,
            artifact=artifact,
            input_roles=[InputRoleOut(**vars(r)) for r in v.input_roles],
            output_roles=[OutputRoleOut(**vars(r)) for r in v.output_roles],
            parameters_schema=v.parameters_schema,
            default_parameters=v.default_parameters,
            default_environment=v.default_environment_id,
            deprecated=v.deprecated,
            created_at=v.created_at,
        )


class VersionList(BaseModel):
    items: list[VersionOut] = Field(description="Newest first.")


class DeprecateRequest(Strict):
    deprecated: bool = Field(True, description="false takes a deprecation back.")


# ---- environments --------------------------------------------------------------------
class EnvironmentCreate(Strict):
    name: str
    description: str | None = Field(None, max_length=_TEXT)
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Names may not start with JOBYARD_."
    )
    pip_requirements: list[str] = Field(
        default_factory=list, description="Requirement specifiers only, e.g. 'pandas==2.*'."
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Relative path → text, written into the job's working directory "
        "(1 MiB in all).",
    )
    cpu_slots: Int32 = Field(1, description="Slots of a node a job takes (1-1024).")
    memory_limit_mb: Int32 | None = Field(None, description="At least 16; null: no limit.")
    max_concurrent_jobs: Int32 = Field(1, description="Jobs of this environment run at once.")
    network: str = Field(
        "full",
        description="'full': the host's network; 'none': a loopback interface only"
        " (enforced by a network namespace when jobs run in the sandbox).",
    )

    def to_spec(self) -> EnvironmentSpec:
        return EnvironmentSpec(**self.model_dump())


class EnvironmentUpdate(Strict):
    """Only the fields given change (maps and lists are replaced whole)."""

    name: str | None = None
    description: str | None = Field(None, max_length=_TEXT)
    env_vars: dict[str, str] | None = None
    pip_requirements: list[str] | None = None
    files: dict[str, str] | None = None
    cpu_slots: Int32 | None = None
    memory_limit_mb: Int32 | None = None
    max_concurrent_jobs: Int32 | None = None
    network: str | None = None


class EnvironmentOut(BaseModel):
    id: str
    name: str
    description: str | None
    env_vars: dict[str, str]
    pip_requirements: list[str]
    files: dict[str, str]
    cpu_slots: int
    memory_limit_mb: int | None
    max_concurrent_jobs: int
    network: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Environment) -> EnvironmentOut:
        return cls(
            id=e.id,
            name=e.name,
            description=e.description,
            env_vars=e.env_vars,
            pip_requirements=list(e.pip_requirements),
            files=e.files,
            cpu_slots=e.cpu_slots,
            memory_limit_mb=e.memory_limit_mb,
            max_concurrent_jobs=e.max_concurrent_jobs,
            network=e.network,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class EnvironmentList(BaseModel):
    items: list[EnvironmentOut]
