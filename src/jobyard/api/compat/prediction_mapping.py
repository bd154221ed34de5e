"""Wire shapes of the Prediction API (spec 004) and their mapping to jobyard's models,
model versions and job definitions; the tables are in ``docs/reference/compat-prediction.md``."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, Field

from jobyard import errors
from jobyard.api.bounds import Int32
from jobyard.api.schemas.base import Strict
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.registry import InputRole, Model, ModelKind, ModelVersion, OutputRole
from jobyard.service.definitions import DefinitionSetup, DefinitionSpec
from jobyard.service.model_specs import ModelSpec, VersionSpec
from jobyard.service.submission import RoleBinding

#: ``input_type`` that binds a role to a jobyard folder; any other type binds a value
FOLDER = "folder"
#: ``input_type`` reported for a value binding whose role declares no ``input_kind``
VALUE = "value"
_TEXT = 10_000


def placeholder_entrypoint(source: str, version: str) -> str:
    """The command of a version created without ``entrypoint``: it prints one line."""
    return "echo " + shlex.quote(f"source {source} version {version}: no code attached")


# ---- requests ------------------------------------------------------------------------
class _SourceFields(Strict):
    description: str | None = Field(None, max_length=_TEXT)
    expectedintervalminutes: Int32 | None = Field(
        None,
        validation_alias=AliasChoices("expectedintervalminutes", "expected_interval_minutes"),
        description="Monitoring hint in minutes (also accepted as expected_interval_minutes).",
    )
    retention_hours: Int32 | None = None


class SourceIn(_SourceFields):
    name: str = Field(max_length=200)


class SetupSourceIn(_SourceFields):
    """An existing source (``id``) or a source by ``name``, created when it is new."""

    id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)


class SourceInputRole(Strict):
    role: str = Field(max_length=100)
    input_kind: str | None = Field(
        None, max_length=100, validation_alias=AliasChoices("input_kind", "kind")
    )
    metric: str | None = Field(None, max_length=100)
    required: bool = True

    def to_domain(self) -> InputRole:
        return InputRole(
            role=self.role, kind=self.input_kind, metric=self.metric, required=self.required
        )


class SourceOutputRole(Strict):
    role: str = Field(max_length=100)
    metric: str | None = Field(None, max_length=100)
    unit: str | None = Field(None, max_length=100)
    required: bool = False

    def to_domain(self) -> OutputRole:
        return OutputRole(
            role=self.role, metric=self.metric, unit=self.unit, required=self.required
        )


class _VersionFields(Strict):
    version: str = Field(max_length=100)
    description: str | None = Field(None, max_length=_TEXT)
    input_roles: list[SourceInputRole] = Field(max_length=200)
    output_roles: list[SourceOutputRole] = Field(max_length=200)
    entrypoint: str | None = Field(
        None,
        max_length=100_000,
        description="jobyard extension: the shell command the version runs "
        "(default: a placeholder that prints one line).",
    )

    def to_spec(self, source_name: str) -> VersionSpec:
        return VersionSpec(
            version=self.version,
            kind=ModelKind.COMMAND,
            entrypoint=self.entrypoint or placeholder_entrypoint(source_name, self.version),
            description=self.description,
            input_roles=tuple(r.to_domain() for r in self.input_roles),
            output_roles=tuple(r.to_domain() for r in self.output_roles),
        )


class SourceVersionIn(_VersionFields):
    source_id: str = Field(max_length=200, description="The source's id (or name).")


class SetupVersionIn(_VersionFields):
    source_id: str | None = Field(None, max_length=200)


class JobRoleBinding(Strict):
    role: str = Field(max_length=100)
    input_id: str = Field(max_length=200)
    input_type: str = Field(VALUE, max_length=100)


class SetupJobIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=_TEXT)
    active: bool = True
    organisation_id: str | None = Field(None, description="null, or the top-level one.")
    source_id: str | None = Field(None, max_length=200)
    source_version_id: str | None = Field(None, max_length=200)
    schedule: str | None = Field(None, max_length=100, description="Cron expression, UTC.")
    role_bindings: list[JobRoleBinding] | None = Field(None, max_length=100)


class JobSetupRequest(Strict):
    organisation_id: str = Field(max_length=200)
    source: SetupSourceIn | None = None
    source_version: SetupVersionIn | None = None
    job: SetupJobIn
    role_bindings: list[JobRoleBinding] | None = Field(None, max_length=100)


class PredictionJobUpdate(Strict):
    """Fields given change, fields left out keep their value. The read-only fields of
    the job shape are accepted and ignored, so a fetched job can be sent back."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=_TEXT)
    active: bool | None = None
    schedule: str | None = Field(None, max_length=100)
    role_bindings: list[JobRoleBinding] | None = Field(None, max_length=100)
    source_version_id: str | None = Field(None, max_length=200)
    source_id: str | None = Field(None, max_length=200)
    organisation_id: str | None = Field(None, max_length=200)
    id: str | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


# ---- responses -----------------------------------------------------------------------
class SourceOut(BaseModel):
    id: str
    organisation_id: str
    name: str
    description: str | None
    expectedintervalminutes: int | None
    retention_hours: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: Model) -> SourceOut:
        return cls(
            id=m.id,
            organisation_id=m.tenant_id,
            name=m.name,
            description=m.description,
            expectedintervalminutes=m.expected_interval_minutes,
            retention_hours=m.retention_hours,
            created_at=m.created_at,
            updated_at=m.updated_at,
        )


class SourceInputRoleOut(BaseModel):
    role: str
    input_kind: str | None
    metric: str | None
    required: bool


class SourceOutputRoleOut(BaseModel):
    role: str
    metric: str | None
    unit: str | None
    required: bool


class SourceVersionOut(BaseModel):
    id: str
    organisation_id: str
    source_id: str
    version: str
    description: str | None
    entrypoint: str | None
    input_roles: list[SourceInputRoleOut]
    output_roles: list[SourceOutputRoleOut]
    created_at: datetime

    @classmethod
    def of(cls, v: ModelVersion) -> SourceVersionOut:
        return cls(
            id=v.id,
            organisation_id=v.tenant_id,
            source_id=v.model_id,
            version=v.version,
            description=v.description,
            entrypoint=v.entrypoint,
            input_roles=[
                SourceInputRoleOut(
                    role=r.role, input_kind=r.kind, metric=r.metric, required=r.required
                )
                for r in v.input_roles
            ],
            output_roles=[
                SourceOutputRoleOut(role=r.role, metric=r.metric, unit=r.unit, required=r.required)
                for r in v.output_roles
            ],
            created_at=v.created_at,
        )


class JobRoleBindingOut(BaseModel):
    role: str
    input_id: Any
    input_type: str


class PredictionJob(BaseModel):
    """A Prediction API job: a jobyard job definition."""

    id: str
    organisation_id: str
    name: str
    description: str | None
    active: bool
    source_id: str
    source_version_id: str
    role_bindings: list[JobRoleBindingOut]
    schedule: str | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: JobDefinition, version: ModelVersion) -> PredictionJob:
        return cls(
            id=d.id,
            organisation_id=d.tenant_id,
            name=d.name,
            description=d.description,
            active=d.active,
            source_id=version.model_id,
            source_version_id=d.model_version_id,
            role_bindings=bindings_out(d, version),
            schedule=d.schedule,
            next_run_at=d.next_run_at,
            last_run_at=d.last_run_at,
            last_job_id=d.last_job_id,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


# ---- role bindings and definition specs ----------------------------------------------
def bindings_in(items: Sequence[JobRoleBinding]) -> tuple[RoleBinding, ...]:
    """``folder`` bindings name a folder (id or name); any other ``input_id`` is a value."""
    return tuple(
        RoleBinding(role=b.role, folder=b.input_id)
        if b.input_type == FOLDER
        else RoleBinding(role=b.role, value=b.input_id)
        for b in items
    )


def bindings_out(d: JobDefinition, version: ModelVersion) -> list[JobRoleBindingOut]:
    """A value binding reports its role's ``input_kind`` as its type (``value`` when the
    role declares none, or declares ``folder``: sent back, the binding stays a value)."""
    kinds = {r.role: r.kind for r in version.input_roles if r.kind != FOLDER}
    return [
        JobRoleBindingOut(role=b["role"], input_id=b["folder_id"], input_type=FOLDER)
        if "folder_id" in b
        else JobRoleBindingOut(
            role=b["role"], input_id=b.get("value"), input_type=kinds.get(b["role"]) or VALUE
        )
        for b in d.role_bindings
    ]


def _stored_bindings(d: JobDefinition) -> tuple[RoleBinding, ...]:
    return tuple(
        RoleBinding(role=b["role"], folder=b.get("folder_id"), value=b.get("value"))
        for b in d.role_bindings
    )


#: the fields of a ``DefinitionSetup`` → the setup request's
SETUP_FIELDS = {
    "version_id": "job.source_version_id",
    "new_version": "source_version",
    "new_model.name": "source.name",
    "model": "job.source_id",
}
#: kinds of jobyard objects → the spec's
SPEC_KINDS = {"model": "source", "model_version": "source_version"}


def spec_not_found(exc: errors.NotFound) -> errors.NotFound:
    """The same error in the spec's words: a model is a source, a version a source
    version."""
    kind, ref = exc.details.get("kind"), exc.details.get("id")
    theirs = SPEC_KINDS.get(kind) if isinstance(kind, str) else None
    if theirs is None or ref is None:
        return exc
    return errors.NotFound(f"{theirs.replace('_', ' ')} {ref} does not exist", kind=theirs, id=ref)


def setup_of(body: JobSetupRequest) -> DefinitionSetup:
    """The definition, source and version a setup request asks for (the service finds
    or creates them); refuses requests that name too little or too much."""
    job, source, version = body.job, body.source, body.source_version
    refs = {
        "source.id": source.id if source else None,
        "job.source_id": job.source_id,
        "source_version.source_id": version.source_id if version else None,
    }
    new_model = None
    if source is not None and source.id is None:
        if source.name is None:
            raise errors.InvalidInput(
                "source: give its id (an existing source) or its name", field="source"
            )
        new_model = ModelSpec(
            name=source.name,
            description=source.description,
            expected_interval_minutes=source.expectedintervalminutes,
            retention_hours=source.retention_hours,
        )
    named = any(refs.values()) or new_model is not None
    if version is not None and job.source_version_id is not None:
        raise errors.InvalidInput(
            "job.source_version_id: give a new source_version or job.source_version_id, not both",
            field="job.source_version_id",
        )
    if version is not None and not named:
        raise errors.InvalidInput(
            "source_version: name its source (source, job.source_id or source_version.source_id)",
            field="source_version.source_id",
        )
    if version is None and job.source_version_id is None and not named:
        raise errors.InvalidInput(
            "job.source_id: name the source to run (source, job.source_id or"
            " job.source_version_id)",
            field="job.source_id",
        )
    return DefinitionSetup(
        definition=_setup_spec(body),
        model_refs={f: r for f, r in refs.items() if r},
        new_model=new_model,
        # a version without entrypoint gets a placeholder that names its source
        new_version=(lambda m: version.to_spec(m.name)) if version else None,
        version_id=job.source_version_id,
    )


def _setup_spec(body: JobSetupRequest) -> DefinitionSpec:
    """The definition a setup request asks for (the service pins its version)."""
    if body.role_bindings is not None and body.job.role_bindings is not None:
        raise errors.InvalidInput(
            "role_bindings: give the role bindings once, at the top level or in job",
            field="role_bindings",
        )
    job = body.job
    return DefinitionSpec(
        name=job.name,
        model=job.source_version_id or "",
        description=job.description,
        role_bindings=bindings_in(body.role_bindings or job.role_bindings or ()),
        active=job.active,
        schedule=job.schedule,
    )


def updated_spec(d: JobDefinition, changes: PredictionJobUpdate, version_id: str) -> DefinitionSpec:
    """The definition ``d`` with the given ``changes``; every other setting is kept."""
    given = changes.model_fields_set
    bindings = changes.role_bindings
    return DefinitionSpec(
        name=d.name if changes.name is None else changes.name,
        model=version_id,
        description=changes.description if "description" in given else d.description,
        role_bindings=_stored_bindings(d) if bindings is None else bindings_in(bindings),
        parameters=dict(d.default_parameters),
        environment=d.environment_id,
        output_folder=d.output_folder_id,
        priority=d.priority,
        timeout_s=d.timeout_s,
        active=d.active if changes.active is None else changes.active,
        schedule=changes.schedule if "schedule" in given else d.schedule,
        max_attempts=d.max_attempts,
        retry_on=d.retry_on,
        notifications=d.notifications,
    )
