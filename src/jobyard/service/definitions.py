"""Job definitions: create and validate, run now, and fire cron schedules."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.jobs import DEFAULT_PROJECT_ID, Job, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.registry import Environment, Model, ModelVersion
from jobyard.service import submission
from jobyard.service.jobs import JobService
from jobyard.service.model_specs import ModelSpec, VersionSpec
from jobyard.service.registry import RegistryService
from jobyard.store.definitions import DefinitionStore

log = logging.getLogger("jobyard.definitions")


@dataclass(frozen=True, kw_only=True)
class DefinitionSpec:
    name: str
    model: str
    description: str | None = None
    role_bindings: tuple[submission.RoleBinding, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    output_folder: str | None = None
    priority: Priority = Priority.NORMAL
    timeout_s: float | None = None
    active: bool = True
    schedule: str | None = None
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ("failed", "timed_out", "node_lost")
    notifications: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class DefinitionSetup:
    """A definition with the model and version it runs, for :meth:`DefinitionService.set_up`.

    The model is the one every ``model_refs`` entry names (field → model id or name) and
    ``new_model`` (by name) finds or creates; the version is the one ``new_version`` specifies for
    that model (created), else the version whose id ``version_id`` is (it must be of that model),
    else the model's newest. ``definition.model`` is replaced by the version's id.
    Errors name the field: a ``model_refs`` key, ``version_id`` or ``new_version``."""

    definition: DefinitionSpec
    model_refs: Mapping[str, str] = field(default_factory=dict)
    new_model: ModelSpec | None = None
    new_version: Callable[[Model], VersionSpec] | None = None
    version_id: str | None = None


class _WithVersion:
    """The registry, plus one version that is not stored yet (a setup stores it with
    the definition that runs it, so the definition is resolved against it first)."""

    def __init__(self, registry: RegistryService, version: ModelVersion) -> None:
        self.registry, self.version = registry, version

    def resolve(self, principal: Principal, ref: str) -> ModelVersion:
        if ref == self.version.id:
            return self.version
        return self.registry.resolve(principal, ref)

    def check_parameters(self, version: ModelVersion, parameters: dict[str, Any]) -> dict[str, Any]:
        return self.registry.check_parameters(version, parameters)

    def get_environment(self, principal: Principal, ref: str) -> Environment:
        return self.registry.get_environment(principal, ref)


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time the cron ``schedule`` (UTC) fires strictly after ``after``."""
    from croniter import croniter  # here: a server without schedules never loads it

    result: datetime = croniter(schedule, after).get_next(datetime)
    return result


def check_schedule(schedule: str | None) -> None:
    if schedule is None:
        return
    from croniter import croniter

    if not croniter.is_valid(schedule):
        raise errors.InvalidInput(
            f"schedule: {schedule!r} is not a valid cron expression (e.g. '*/15 * * * *')",
            field="schedule",
        )


class DefinitionService:
    def __init__(
        self,
        *,
        store: DefinitionStore,
        jobs: JobService,
        registry: RegistryService,
        clock: Clock,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.registry = registry
        self.clock = clock

    def _resolve(
        self,
        principal: Principal,
        spec: DefinitionSpec,
        registry: submission.Registry | None = None,
    ) -> JobSpec:
        request = submission.JobRequest(
            spec=JobSpec(
                parameters=spec.parameters, priority=spec.priority, timeout_s=spec.timeout_s
            ),
            model=spec.model,
            environment=spec.environment,
            output_folder=spec.output_folder,
            bindings=spec.role_bindings,
        )
        return submission.resolve(
            request, principal, registry or self.jobs.registry, self.jobs.folders
        )

    def create(self, principal: Principal, spec: DefinitionSpec) -> JobDefinition:
        now = self.clock.now()
        return self.store.insert(principal.tenant_id, self._new(principal, spec, now), now)

    def _new(
        self,
        principal: Principal,
        spec: DefinitionSpec,
        now: datetime,
        registry: submission.Registry | None = None,
    ) -> dict[str, Any]:
        """The row of a new definition, checked."""
        if not spec.name.strip() or len(spec.name) > 200:
            raise errors.InvalidInput("name must be 1 to 200 characters", field="name")
        check_schedule(spec.schedule)
        values = _values(spec, self._resolve(principal, spec, registry))
        values["next_run_at"] = (
            next_run(spec.schedule, now) if spec.schedule and spec.active else None
        )
        values["project_id"] = principal.project_id or DEFAULT_PROJECT_ID
        return values

    def set_up(
        self, principal: Principal, setup: DefinitionSetup
    ) -> tuple[JobDefinition, ModelVersion]:
        """Create a definition with the model and version it runs, those created when
        new, in one transaction: when any check fails nothing is stored, so the corrected
        request can simply be sent again."""
        model, new_model = self._setup_model(principal, setup)
        new_version = None
        if setup.new_version is not None:
            if model is None:
                raise errors.InvalidInput(
                    "new_version: name the model it is a version of", field="new_version"
                )
            spec = setup.new_version(model)
            version = new_version = self.registry.new_version(principal, model, spec)
        else:
            version = self._setup_version(principal, setup, model)
        now = self.clock.now()
        definition = replace(setup.definition, model=version.id)
        values = self._new(principal, definition, now, _WithVersion(self.registry, version))
        stored = self.store.insert(
            principal.tenant_id, values, now, model=new_model, version=new_version
        )
        return stored, version

    def _setup_model(
        self, principal: Principal, setup: DefinitionSetup
    ) -> tuple[Model | None, Model | None]:
        """(the setup's model, the same when it is to be created) or (None, None)."""
        found: dict[str, Model] = {}
        new = None
        if setup.new_model is not None:
            try:
                found["new_model.name"] = self.registry.get_model(principal, setup.new_model.name)
            except errors.NotFound:
                new = self.registry.new_model(principal, setup.new_model)
        found |= {f: self.registry.get_model(principal, r) for f, r in setup.model_refs.items()}
        if found and (new is not None or len({m.id for m in found.values()}) > 1):
            names = ", ".join(
                sorted({m.name for m in found.values()} | ({new.name} if new else set()))
            )
            raise errors.InvalidInput(
                f"{', '.join(found)}: they name different models ({names})",
                field=next(iter(found)),
            )
        return (new, new) if new is not None else (next(iter(found.values()), None), None)

    def _setup_version(
        self, principal: Principal, setup: DefinitionSetup, model: Model | None
    ) -> ModelVersion:
        """The existing version the setup runs: ``version_id``, else the model's newest."""
        if setup.version_id is not None:
            try:
                found = self.registry.resolve(principal, setup.version_id, field="version_id")
            except (errors.NotFound, errors.InvalidInput):
                found = None
            if found is None or found.id != setup.version_id:  # resolve also takes names
                raise errors.NotFound(
                    f"model version {setup.version_id} does not exist",
                    kind="model_version",
                    id=setup.version_id,
                )
            if model is not None and found.model_id != model.id:
                raise errors.InvalidInput(
                    f"version_id: version {found.id} is not a version of model {model.name}",
                    field="version_id",
                )
            return found
        if model is None:
            raise errors.InvalidInput("model: name the model to run", field="model")
        try:
            return self.registry.resolve(principal, model.name)
        except errors.NotFound:
            raise errors.InvalidInput(
                f"new_version: model {model.name} has no version to run; create one"
                " (new_version) or name one (version_id)",
                field="new_version",
            ) from None

    def get(self, principal: Principal, def_id: str) -> JobDefinition:
        return self.store.get(principal.tenant_id, def_id, principal.project_id)

    def list_definitions(self, principal: Principal) -> list[JobDefinition]:
        return self.store.list_all(principal.tenant_id, principal.project_id)

    def update(self, principal: Principal, def_id: str, spec: DefinitionSpec) -> JobDefinition:
        """Replace the definition's settings (validated like a new one)."""
        self.store.get(principal.tenant_id, def_id, principal.project_id)
        check_schedule(spec.schedule)
        resolved = self._resolve(principal, spec)
        now = self.clock.now()
        values = _values(spec, resolved)
        values["next_run_at"] = (
            next_run(spec.schedule, now) if spec.schedule and spec.active else None
        )
        return self.store.update(principal.tenant_id, def_id, values, now)

    def delete(self, principal: Principal, def_id: str) -> None:
        self.store.get(principal.tenant_id, def_id, principal.project_id)
        self.store.delete(principal.tenant_id, def_id)

    def run_now(
        self, principal: Principal, def_id: str, parameters: dict[str, Any] | None = None
    ) -> Job:
        d = self.store.get(principal.tenant_id, def_id, principal.project_id)
        if not d.active:
            raise errors.Conflict(f"job definition {d.name!r} is not active; activate it first")
        return self._submit(principal, d, parameters or {})

    def _submit(self, principal: Principal, d: JobDefinition, overrides: dict[str, Any]) -> Job:
        request = submission.JobRequest(
            spec=JobSpec(
                name=d.name,
                parameters={**d.default_parameters, **overrides},
                priority=d.priority,
                timeout_s=d.timeout_s,
                definition_id=d.id,
                max_attempts=d.max_attempts,
                retry_on=d.retry_on,
                notifications=d.notifications,
            ),
            model=d.model_version_id,
            environment=d.environment_id,
            output_folder=d.output_folder_id,
            bindings=tuple(
                submission.RoleBinding(
                    role=b["role"], folder=b.get("folder_id"), value=b.get("value")
                )
                for b in d.role_bindings
            ),
        )
        job, _ = self.jobs.submit_request(principal, request)
        self.store.set_last_job(d.id, job.id)
        return job

    def fire_due(self) -> list[Job]:
        """Submit one job for every scheduled definition whose time has come (each run
        fires once even with several replicas: the schedule moves by compare-and-set)."""
        now = self.clock.now()
        fired = []
        for d in self.store.due(now):
            assert d.schedule is not None
            if not self.store.advance(d, next_run(d.schedule, now), now):
                continue
            principal = Principal(
                tenant_id=d.tenant_id,
                key_id="scheduler",
                key_name=f"schedule:{d.name}",
                role=Role.MEMBER,
            )
            try:
                fired.append(self._submit(principal, d, {}))
            except errors.JobyardError as e:
                log.warning(
                    "definition %s (%s) could not submit its scheduled job: %s", d.id, d.name, e
                )
        return fired


def _values(spec: DefinitionSpec, resolved: JobSpec) -> dict[str, Any]:
    assert resolved.model_version_id is not None
    return {
        "name": spec.name,
        "description": spec.description,
        "model_version_id": resolved.model_version_id,
        "role_bindings": list(resolved.input_bindings),
        "default_parameters": dict(spec.parameters),
        "environment_id": resolved.environment_id,
        "output_folder_id": resolved.output_folder_id,
        "priority": spec.priority.value,
        "timeout_s": spec.timeout_s,
        "active": spec.active,
        "schedule": spec.schedule,
        "max_attempts": spec.max_attempts,
        "retry_on": list(spec.retry_on),
        "notifications": resolved.notifications,
    }
