"""Models, model versions and environment configurations.

Every query is scoped by ``tenant_id``; only the ``*_unscoped`` getters (for the
dispatcher, which runs jobs of all tenants) are not.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from jobyard import errors
from jobyard.domain.jobs import DEFAULT_PROJECT_ID
from jobyard.domain.registry import (
    Environment,
    InputRole,
    Model,
    ModelKind,
    ModelVersion,
    OutputRole,
)
from jobyard.store.database import Database
from jobyard.store.tables import environments, job_definitions, model_versions, models

_id_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A UUID (version 7 layout) that sorts by creation time within this process, so
    "newest" is well defined even when two rows share a ``created_at``."""
    global _last_ms, _seq
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms, _seq = _last_ms, _seq + 1
        else:
            _seq = 0
        if _seq >= 1 << 12:  # 4096 ids in one millisecond: borrow the next one
            ms, _seq = ms + 1, 0
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


def _model(row: Mapping[Any, Any]) -> Model:
    return Model(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        description=row["description"],
        expected_interval_minutes=row["expected_interval_minutes"],
        retention_hours=row["retention_hours"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: Mapping[Any, Any]) -> ModelVersion:
    return ModelVersion(
        id=row["id"],
        tenant_id=row["tenant_id"],
        model_id=row["model_id"],
        model_name=row["model_name"],
        version=row["version"],
        description=row["description"],
        kind=ModelKind(row["kind"]),
        entrypoint=row["entrypoint"],
        artifact_sha256=row["artifact_sha256"],
        artifact_name=row["artifact_name"],
        artifact_size=row["artifact_size"],
        artifact_is_archive=bool(row["artifact_is_archive"]),
        input_roles=tuple(InputRole(**r) for r in row["input_roles"] or ()),
        output_roles=tuple(OutputRole(**r) for r in row["output_roles"] or ()),
        parameters_schema=row["parameters_schema"],
        default_parameters=row["default_parameters"] or {},
        default_environment_id=row["default_environment_id"],
        deprecated=bool(row["deprecated"]),
        created_at=row["created_at"],
    )


def _environment(row: Mapping[Any, Any]) -> Environment:
    return Environment(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        description=row["description"],
        env_vars=dict(row["env_vars"] or {}),
        pip_requirements=tuple(row["pip_requirements"] or ()),
        files=dict(row["files"] or {}),
        cpu_slots=row["cpu_slots"],
        memory_limit_mb=row["memory_limit_mb"],
        max_concurrent_jobs=row["max_concurrent_jobs"],
        network=row["network"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _roles(roles: tuple[InputRole, ...] | tuple[OutputRole, ...]) -> list[dict[str, Any]]:
    return [dict(vars(r)) for r in roles]


_VERSION_SELECT = sa.select(model_versions, models.c.name.label("model_name")).join(
    models, models.c.id == model_versions.c.model_id
)
_NEWEST_FIRST = (model_versions.c.created_at.desc(), model_versions.c.id.desc())


class RegistryStore:
    """All SQL about models, model versions and environments."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- models ------------------------------------------------------------------
    def insert_model(self, model: Model, project_id: str | None = None) -> Model:
        """Insert (into ``project_id``, else the default project); Conflict when the
        tenant already has a model of that name."""
        with self.db.write() as conn:
            return insert_model(conn, model, project_id)

    def find_model(self, tenant_id: str, ref: str, project_id: str | None = None) -> Model | None:
        """The tenant's model with this id or name (an id match wins), within
        ``project_id`` when given."""
        stmt = sa.select(models).where(
            models.c.tenant_id == tenant_id, sa.or_(models.c.id == ref, models.c.name == ref)
        )
        if project_id is not None:
            stmt = stmt.where(models.c.project_id == project_id)
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        rows = sorted(rows, key=lambda r: r["id"] != ref)
        return _model(rows[0]) if rows else None

    def list_models(self, tenant_id: str, project_id: str | None = None) -> list[Model]:
        stmt = sa.select(models).where(models.c.tenant_id == tenant_id).order_by(models.c.name)
        if project_id is not None:
            stmt = stmt.where(models.c.project_id == project_id)
        with self.db.read() as conn:
            return [_model(r) for r in conn.execute(stmt).mappings()]

    def update_model(self, tenant_id: str, model_id: str, values: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                models.update()
                .where(models.c.id == model_id, models.c.tenant_id == tenant_id)
                .values(**values)
            )

    def delete_model(self, tenant_id: str, model_id: str) -> None:
        """Delete the model and all its versions in one transaction."""
        try:
            with self.db.write() as conn:
                conn.execute(
                    model_versions.delete().where(
                        model_versions.c.model_id == model_id,
                        model_versions.c.tenant_id == tenant_id,
                    )
                )
                conn.execute(
                    models.delete().where(models.c.id == model_id, models.c.tenant_id == tenant_id)
                )
        except exc.IntegrityError:
            raise errors.Conflict(
                "the model's versions are still referenced (by job definitions)"
            ) from None

    # ---- versions ----------------------------------------------------------------
    def insert_version(self, version: ModelVersion) -> ModelVersion:
        """Insert; Conflict when the model already has this version (versions are immutable)."""
        with self.db.write() as conn:
            return insert_version(conn, version)

    def _one_version(self, *cond: Any) -> ModelVersion | None:
        with self.db.read() as conn:
            row = conn.execute(_VERSION_SELECT.where(*cond)).mappings().first()
        return _version(row) if row else None

    def find_version(self, tenant_id: str, model_id: str, version: str) -> ModelVersion | None:
        return self._one_version(
            model_versions.c.tenant_id == tenant_id,
            model_versions.c.model_id == model_id,
            model_versions.c.version == version,
        )

    def find_version_by_id(
        self, tenant_id: str, version_id: str, project_id: str | None = None
    ) -> ModelVersion | None:
        cond = [model_versions.c.tenant_id == tenant_id, model_versions.c.id == version_id]
        if project_id is not None:
            cond.append(models.c.project_id == project_id)
        return self._one_version(*cond)

    def get_version_unscoped(self, version_id: str) -> ModelVersion | None:
        """A version by id across tenants: for the dispatcher, never for API reads."""
        return self._one_version(model_versions.c.id == version_id)

    def list_versions(self, tenant_id: str, model_id: str) -> list[ModelVersion]:
        """The model's versions, newest first."""
        stmt = _VERSION_SELECT.where(
            model_versions.c.tenant_id == tenant_id, model_versions.c.model_id == model_id
        ).order_by(*_NEWEST_FIRST)
        with self.db.read() as conn:
            return [_version(r) for r in conn.execute(stmt).mappings()]

    def newest_version(self, tenant_id: str, model_id: str) -> ModelVersion | None:
        """The newest version that is not deprecated."""
        stmt = (
            _VERSION_SELECT.where(
                model_versions.c.tenant_id == tenant_id,
                model_versions.c.model_id == model_id,
                model_versions.c.deprecated == sa.false(),
            )
            .order_by(*_NEWEST_FIRST)
            .limit(1)
        )
        with self.db.read() as conn:
            row = conn.execute(stmt).mappings().first()
        return _version(row) if row else None

    def set_deprecated(self, tenant_id: str, version_id: str, deprecated: bool) -> None:
        with self.db.write() as conn:
            conn.execute(
                model_versions.update()
                .where(model_versions.c.id == version_id, model_versions.c.tenant_id == tenant_id)
                .values(deprecated=deprecated)
            )

    def delete_version(self, tenant_id: str, version_id: str) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(
                    model_versions.delete().where(
                        model_versions.c.id == version_id,
                        model_versions.c.tenant_id == tenant_id,
                    )
                )
        except exc.IntegrityError:
            raise errors.Conflict(
                "the model version is still referenced (by a job definition)"
            ) from None

    def count_definitions_using(self, tenant_id: str, version_ids: list[str]) -> int:
        """Job definitions that pin any of these versions."""
        if not version_ids:
            return 0
        stmt = (
            sa.select(sa.func.count())
            .select_from(job_definitions)
            .where(
                job_definitions.c.tenant_id == tenant_id,
                job_definitions.c.model_version_id.in_(version_ids),
            )
        )
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    # ---- environments ------------------------------------------------------------
    def insert_environment(self, env: Environment, project_id: str | None = None) -> Environment:
        """Insert (into ``project_id``, else the default project); Conflict when the
        tenant already has an environment of that name."""
        values = dict(vars(env), project_id=project_id or DEFAULT_PROJECT_ID)
        values["pip_requirements"] = list(env.pip_requirements)
        try:
            with self.db.write() as conn:
                conn.execute(environments.insert().values(**values))
        except exc.IntegrityError:
            raise _env_name_taken(env.name) from None
        return env

    def find_environment(
        self, tenant_id: str, ref: str, project_id: str | None = None
    ) -> Environment | None:
        """The tenant's environment with this id or name (an id match wins), within
        ``project_id`` when given."""
        stmt = sa.select(environments).where(
            environments.c.tenant_id == tenant_id,
            sa.or_(environments.c.id == ref, environments.c.name == ref),
        )
        if project_id is not None:
            stmt = stmt.where(environments.c.project_id == project_id)
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        rows = sorted(rows, key=lambda r: r["id"] != ref)
        return _environment(rows[0]) if rows else None

    def get_environment_unscoped(self, env_id: str) -> Environment | None:
        """An environment by id across tenants: for the dispatcher, never for API reads."""
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(environments).where(environments.c.id == env_id))
                .mappings()
                .first()
            )
        return _environment(row) if row else None

    def list_environments(self, tenant_id: str, project_id: str | None = None) -> list[Environment]:
        stmt = (
            sa.select(environments)
            .where(environments.c.tenant_id == tenant_id)
            .order_by(environments.c.name)
        )
        if project_id is not None:
            stmt = stmt.where(environments.c.project_id == project_id)
        with self.db.read() as conn:
            return [_environment(r) for r in conn.execute(stmt).mappings()]

    def update_environment(self, env: Environment) -> Environment:
        """Write every mutable field of ``env``; Conflict on a name already taken."""
        values = {k: v for k, v in vars(env).items() if k not in ("id", "tenant_id", "created_at")}
        values["pip_requirements"] = list(env.pip_requirements)
        try:
            with self.db.write() as conn:
                conn.execute(
                    environments.update()
                    .where(environments.c.id == env.id, environments.c.tenant_id == env.tenant_id)
                    .values(**values)
                )
        except exc.IntegrityError:
            raise _env_name_taken(env.name) from None
        return env

    def delete_environment(self, tenant_id: str, env_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                environments.delete().where(
                    environments.c.id == env_id, environments.c.tenant_id == tenant_id
                )
            )


def insert_model(conn: sa.Connection, model: Model, project_id: str | None) -> Model:
    """:meth:`RegistryStore.insert_model` inside ``conn``'s transaction."""
    values = dict(vars(model), project_id=project_id or DEFAULT_PROJECT_ID)
    try:  # an error ends the caller's transaction too: it rolls back
        conn.execute(models.insert().values(**values))
    except exc.IntegrityError:
        raise errors.Conflict(
            f"a model named {model.name!r} already exists", kind="model", name=model.name
        ) from None
    return model


def insert_version(conn: sa.Connection, version: ModelVersion) -> ModelVersion:
    """:meth:`RegistryStore.insert_version` inside ``conn``'s transaction."""
    values = {k: v for k, v in vars(version).items() if k != "model_name"}
    values["kind"] = version.kind.value
    values["input_roles"] = _roles(version.input_roles)
    values["output_roles"] = _roles(version.output_roles)
    try:
        conn.execute(model_versions.insert().values(**values))
    except exc.IntegrityError:
        raise duplicate_version(version.model_name, version.version) from None
    return version


def duplicate_version(model_name: str, version: str) -> errors.Conflict:
    return errors.Conflict(
        f"model {model_name} already has version {version}; versions are immutable",
        kind="model_version",
        model=model_name,
        version=version,
    )


def _env_name_taken(name: str) -> errors.Conflict:
    return errors.Conflict(
        f"an environment named {name!r} already exists", kind="environment", name=name
    )
