"""Job definitions: create and validate, run now, and fire cron schedules."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from croniter import croniter

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.jobs import DEFAULT_PROJECT_ID, Job, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.service import submission
from jobyard.service.jobs import JobService
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


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time the cron ``schedule`` (UTC) fires strictly after ``after``."""
    result: datetime = croniter(schedule, after).get_next(datetime)
    return result


def check_schedule(schedule: str | None) -> None:
    if schedule is not None and not croniter.is_valid(schedule):
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
        clock: Clock,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock

    def _resolve(self, principal: Principal, spec: DefinitionSpec) -> JobSpec:
        request = submission.JobRequest(
            spec=JobSpec(
                parameters=spec.parameters, priority=spec.priority, timeout_s=spec.timeout_s
            ),
            model=spec.model,
            environment=spec.environment,
            output_folder=spec.output_folder,
            bindings=spec.role_bindings,
        )
        return submission.resolve(request, principal, self.jobs.registry, self.jobs.folders)

    def create(self, principal: Principal, spec: DefinitionSpec) -> JobDefinition:
        if not spec.name.strip() or len(spec.name) > 200:
            raise errors.InvalidInput("name must be 1 to 200 characters", field="name")
        check_schedule(spec.schedule)
        resolved = self._resolve(principal, spec)
        now = self.clock.now()
        values = _values(spec, resolved)
        values["next_run_at"] = (
            next_run(spec.schedule, now) if spec.schedule and spec.active else None
        )
        values["project_id"] = principal.project_id or DEFAULT_PROJECT_ID
        return self.store.insert(principal.tenant_id, values, now)

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
