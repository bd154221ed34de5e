"""``/v1/definitions``: job definitions (a model version with bound inputs, default
parameters and an optional cron schedule), and running them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel, Field

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.api.schemas import JobOut, RetryOutcome, RoleBindingIn, Strict
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.priorities import Priority
from jobyard.service.definitions import DefinitionSpec
from jobyard.service.submission import RoleBinding

router = APIRouter(prefix="/v1/definitions", tags=["definitions"], responses=ERRORS)


class DefinitionIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(max_length=300, description="`name:version` or a version id (pinned).")
    description: str | None = Field(None, max_length=10_000)
    role_bindings: list[RoleBindingIn] = Field(default_factory=list, max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = Field(None, max_length=200)
    output_folder: str | None = Field(None, max_length=200)
    priority: Priority = Priority.NORMAL
    timeout_s: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    active: bool = True
    schedule: str | None = Field(None, max_length=100, description="Cron expression, UTC.")
    max_attempts: int = Field(1, ge=1, le=20)
    retry_on: list[RetryOutcome] = Field(default_factory=lambda: list(RetryOutcome))
    notifications: dict[str, Any] | None = Field(
        None, description="As on a job (each run notifies)."
    )

    def to_spec(self) -> DefinitionSpec:
        return DefinitionSpec(
            name=self.name,
            model=self.model,
            description=self.description,
            role_bindings=tuple(
                RoleBinding(role=b.role, folder=b.folder, value=b.value) for b in self.role_bindings
            ),
            parameters=self.parameters,
            environment=self.environment,
            output_folder=self.output_folder,
            priority=self.priority,
            timeout_s=self.timeout_s,
            active=self.active,
            schedule=self.schedule,
            max_attempts=self.max_attempts,
            retry_on=tuple(o.value for o in self.retry_on),
            notifications=self.notifications,
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


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a job definition")
def create_definition(
    body: DefinitionIn, services: ServicesDep, principal: PrincipalDep
) -> DefinitionOut:
    return DefinitionOut.of(services.definitions.create(principal, body.to_spec()))


@router.get("", summary="List job definitions")
def list_definitions(services: ServicesDep, principal: PrincipalDep) -> DefinitionList:
    return DefinitionList(
        items=[DefinitionOut.of(d) for d in services.definitions.list_definitions(principal)]
    )


@router.get("/{def_id}", summary="Get a job definition")
def get_definition(def_id: str, services: ServicesDep, principal: PrincipalDep) -> DefinitionOut:
    return DefinitionOut.of(services.definitions.get(principal, def_id))


@router.put("/{def_id}", summary="Replace a job definition's settings")
def update_definition(
    def_id: str, body: DefinitionIn, services: ServicesDep, principal: PrincipalDep
) -> DefinitionOut:
    return DefinitionOut.of(services.definitions.update(principal, def_id, body.to_spec()))


@router.delete(
    "/{def_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a job definition"
)
def delete_definition(def_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.definitions.delete(principal, def_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{def_id}/run", status_code=status.HTTP_201_CREATED, summary="Run a job definition now"
)
def run_definition(
    def_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    body: Annotated[RunIn | None, Body()] = None,
) -> JobOut:
    job = services.definitions.run_now(principal, def_id, (body or RunIn()).parameters)
    return JobOut.from_job(job, services.clock.now())
