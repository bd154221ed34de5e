"""Model and model version use cases (part of :class:`RegistryService`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.domain.registry import Model, ModelKind, ModelVersion
from jobyard.service import model_specs as specs
from jobyard.service.model_specs import ArtifactUpload, VersionSpec
from jobyard.storage.blobs import BlobStore
from jobyard.store.jobs import JobStore
from jobyard.store.registry import RegistryStore, duplicate_version, new_id

MODEL_FIELDS = ("description", "expected_interval_minutes", "retention_hours")


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


class ModelUseCases:
    """Models (mutable metadata) and their immutable versions."""

    store: RegistryStore
    blobs: BlobStore
    jobs: JobStore
    clock: Clock
    max_upload_bytes: int

    # ---- models ------------------------------------------------------------------
    def create_model(
        self,
        principal: Principal,
        name: str,
        description: str | None = None,
        expected_interval_minutes: int | None = None,
        retention_hours: int | None = None,
    ) -> Model:
        spec = specs.ModelSpec(
            name=name,
            description=description,
            expected_interval_minutes=expected_interval_minutes,
            retention_hours=retention_hours,
        )
        return self.store.insert_model(self.new_model(principal, spec), principal.project_id)

    def new_model(self, principal: Principal, spec: specs.ModelSpec) -> Model:
        """The model :meth:`create_model` would store, checked but not stored (for a
        caller that stores it with other rows in one transaction)."""
        now = self.clock.now()
        return Model(
            id=new_id(),
            tenant_id=principal.tenant_id,
            name=specs.check_name(spec.name, "model"),
            created_at=now,
            updated_at=now,
            **_model_fields(
                {
                    "description": spec.description,
                    "expected_interval_minutes": spec.expected_interval_minutes,
                    "retention_hours": spec.retention_hours,
                }
            ),
        )

    def get_model(self, principal: Principal, ref: str) -> Model:
        """The caller's model with this id or name, or NotFound."""
        model = self.store.find_model(principal.tenant_id, ref, principal.project_id)
        if model is None:
            raise errors.NotFound(f"model {ref} does not exist", kind="model", id=ref)
        return model

    def list_models(self, principal: Principal) -> list[Model]:
        """The caller's models by name."""
        return self.store.list_models(principal.tenant_id, principal.project_id)

    def update_model(self, principal: Principal, ref: str, **changes: Any) -> Model:
        """Change ``description``, ``expected_interval_minutes`` or ``retention_hours``
        (None clears them); versions are never changed."""
        model = self.get_model(principal, ref)
        for key in changes:
            if key not in MODEL_FIELDS:
                raise errors.InvalidInput(
                    f"{key}: cannot be changed (changeable: {', '.join(MODEL_FIELDS)})", field=key
                )
        values = {**_model_fields(changes), "updated_at": self.clock.now()}
        self.store.update_model(principal.tenant_id, model.id, values)
        return self.get_model(principal, model.id)

    def delete_model(self, principal: Principal, ref: str) -> None:
        """Delete the model and its versions; Conflict while a job references any of them."""
        model = self.get_model(principal, ref)
        ids = [v.id for v in self.store.list_versions(principal.tenant_id, model.id)]
        used = sum(self.jobs.count_using_version(principal.tenant_id, v) for v in ids)
        if used:
            raise errors.Conflict(
                f"model {model.name} cannot be deleted: {used} job(s) reference its versions",
                kind="model",
                jobs=used,
            )
        self._refuse_if_defined(principal, ids, f"model {model.name}")
        self.store.delete_model(principal.tenant_id, model.id)

    # ---- versions ----------------------------------------------------------------
    def create_version(
        self,
        principal: Principal,
        model_ref: str,
        spec: VersionSpec,
        artifact: ArtifactUpload | None = None,
    ) -> ModelVersion:
        """Create an immutable version; a second create of the same version is a Conflict."""
        model = self.get_model(principal, model_ref)
        return self.store.insert_version(self.new_version(principal, model, spec, artifact))

    def new_version(
        self,
        principal: Principal,
        model: Model,
        spec: VersionSpec,
        artifact: ArtifactUpload | None = None,
    ) -> ModelVersion:
        """The version of ``model`` that :meth:`create_version` would store, checked but
        not stored (an artifact goes into the blob store at once); ``model`` may be one
        not stored yet either (see :meth:`new_model`)."""
        version = specs.check_version_string(spec.version)
        specs.check_text(spec.description, "description")
        specs.check_text(spec.entrypoint, "entrypoint", specs.MAX_ENTRYPOINT)
        specs.check_roles(spec.input_roles, spec.output_roles)
        schema = None
        if spec.parameters_schema is not None:
            schema = specs.check_schema(spec.parameters_schema)
            specs.validate_parameters(
                schema, spec.default_parameters, "default_parameters", partial=True
            )
        env_id = None
        if spec.default_environment is not None:
            env = self.store.find_environment(
                principal.tenant_id, spec.default_environment, principal.project_id
            )
            if env is None:
                raise errors.NotFound(
                    f"default_environment: environment {spec.default_environment} does not exist",
                    kind="environment",
                    id=spec.default_environment,
                )
            env_id = env.id
        if self.store.find_version(principal.tenant_id, model.id, version) is not None:
            raise duplicate_version(model.name, version)
        kind = _infer(spec, artifact) if spec.kind is None else _kind(spec.kind)
        entrypoint = spec.entrypoint or None
        specs.check_needs(kind, entrypoint, has_artifact=artifact is not None)
        sha = name = size = None
        if artifact is not None:
            checked = self._check_artifact(kind, entrypoint, artifact)
            with checked.file:
                sha, size = self.blobs.put_stream(checked.chunks())
            name, entrypoint = checked.name, checked.entrypoint
        return ModelVersion(
            id=new_id(),
            tenant_id=principal.tenant_id,
            model_id=model.id,
            model_name=model.name,
            version=version,
            description=spec.description,
            kind=kind,
            entrypoint=entrypoint,
            artifact_sha256=sha,
            artifact_name=name,
            artifact_size=size,
            artifact_is_archive=bool(artifact and artifact.is_archive),
            input_roles=tuple(spec.input_roles),
            output_roles=tuple(spec.output_roles),
            parameters_schema=schema,
            default_parameters=dict(spec.default_parameters),
            default_environment_id=env_id,
            deprecated=False,
            created_at=self.clock.now(),
        )

    def _check_artifact(
        self, kind: ModelKind, entrypoint: str | None, artifact: ArtifactUpload
    ) -> specs.CheckedArtifact:
        name = specs.artifact_name(artifact.filename, artifact.is_archive)
        f = specs.spool(artifact.chunks, self.max_upload_bytes)
        try:
            if artifact.is_archive:
                limit = self.max_upload_bytes * specs.UNPACK_FACTOR
                entrypoint = specs.check_archive(f, kind, entrypoint, limit)
            else:
                entrypoint = specs.check_single_file(f, name, kind, entrypoint)
        except BaseException:
            f.close()
            raise
        return specs.CheckedArtifact(f, name, entrypoint)

    def get_version(self, principal: Principal, model_ref: str, version: str) -> ModelVersion:
        model = self.get_model(principal, model_ref)
        found = self.store.find_version(principal.tenant_id, model.id, version)
        if found is None:
            raise errors.NotFound(
                f"model {model.name} has no version {version}",
                kind="model_version",
                model=model.name,
                version=version,
            )
        return found

    def list_versions(self, principal: Principal, model_ref: str) -> list[ModelVersion]:
        """The model's versions, newest first."""
        model = self.get_model(principal, model_ref)
        return self.store.list_versions(principal.tenant_id, model.id)

    def deprecate_version(
        self, principal: Principal, model_ref: str, version: str, deprecated: bool = True
    ) -> ModelVersion:
        """Mark (or unmark) the version deprecated: it stays runnable by ``NAME:VERSION``
        and id, but ``NAME`` alone no longer resolves to it."""
        found = self.get_version(principal, model_ref, version)
        self.store.set_deprecated(principal.tenant_id, found.id, deprecated)
        return self.get_version(principal, found.model_id, version)

    def delete_version(self, principal: Principal, model_ref: str, version: str) -> None:
        """Delete a version no job references (Conflict naming the count otherwise)."""
        found = self.get_version(principal, model_ref, version)
        used = self.jobs.count_using_version(principal.tenant_id, found.id)
        if used:
            raise errors.Conflict(
                f"model version {found.ref} cannot be deleted: {used} job(s) reference it"
                " (deprecate it instead)",
                kind="model_version",
                jobs=used,
            )
        self._refuse_if_defined(principal, [found.id], f"model version {found.ref}")
        self.store.delete_version(principal.tenant_id, found.id)

    def _refuse_if_defined(self, principal: Principal, ids: list[str], what: str) -> None:
        defined = self.store.count_definitions_using(principal.tenant_id, ids)
        if defined:
            raise errors.Conflict(
                f"{what} cannot be deleted: {defined} job definition(s) use it",
                definitions=defined,
            )

    def open_artifact(
        self, principal: Principal, model_ref: str, version: str
    ) -> tuple[ModelVersion, Iterator[bytes]]:
        """The version and its artifact's bytes; NotFound when it has none."""
        found = self.get_version(principal, model_ref, version)
        if found.artifact_sha256 is None:
            raise errors.NotFound(f"model version {found.ref} has no artifact")
        if not self.blobs.exists(found.artifact_sha256):
            raise errors.NotFound(f"the artifact of model version {found.ref} is missing")
        return found, self.blobs.read_chunks(found.artifact_sha256)

    def resolve(self, principal: Principal, ref: str, *, field: str = "model") -> ModelVersion:
        """``NAME:VERSION``, ``NAME`` (its newest version that is not deprecated) or a
        version id."""
        name, sep, version = ref.partition(":")
        if sep:
            if not specs.NAME_RE.fullmatch(name) or not specs.VERSION_RE.fullmatch(version):
                raise _bad_ref(ref, field)
            return self.get_version(principal, name, version)
        if _is_uuid(ref):
            found = self.store.find_version_by_id(principal.tenant_id, ref, principal.project_id)
            if found is not None:
                return found
        if not specs.NAME_RE.fullmatch(ref):
            raise _bad_ref(ref, field)
        model = self.store.find_model(principal.tenant_id, ref, principal.project_id)
        if model is None:
            raise errors.NotFound(f"no model or model version {ref}", kind="model", id=ref)
        newest = self.store.newest_version(principal.tenant_id, model.id)
        if newest is None:
            raise errors.NotFound(
                f"model {model.name} has no version that is not deprecated;"
                " name one as NAME:VERSION",
                kind="model_version",
                model=model.name,
            )
        return newest

    def check_parameters(
        self, version: ModelVersion, parameters: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The version's default parameters overridden by ``parameters``, validated against
        its ``parameters_schema``; InvalidInput names the field (``parameters.x``)."""
        merged = {**version.default_parameters, **parameters}
        if version.parameters_schema is not None:
            specs.validate_parameters(version.parameters_schema, merged, "parameters")
        return merged


def _infer(spec: VersionSpec, artifact: ArtifactUpload | None) -> ModelKind:
    if artifact is None:
        return ModelKind.COMMAND
    return specs.infer_kind(spec.entrypoint if artifact.is_archive else artifact.filename)


def _kind(value: str) -> ModelKind:
    try:
        return ModelKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in ModelKind)
        raise errors.InvalidInput(
            f"kind: {value!r} is not one of {allowed}", field="kind"
        ) from None


def _bad_ref(ref: str, field: str) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"{field}: {ref!r} is not a model reference (NAME, NAME:VERSION or a version id)",
        field=field,
    )


def _model_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "description" in values:
        out["description"] = specs.check_text(values["description"], "description")
    for key in ("expected_interval_minutes", "retention_hours"):
        if key in values:
            out[key] = specs.check_int(values[key], key, minimum=1)
    return out
