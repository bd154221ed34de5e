"""`/v1/environments`: environment configurations (env vars, pip, files, resources)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.registry import (
    EnvironmentCreate,
    EnvironmentList,
    EnvironmentOut,
    EnvironmentUpdate,
)

router = APIRouter(prefix="/v1/environments", tags=["environments"], responses=ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an environment")
def create_environment(
    body: EnvironmentCreate, services: ServicesDep, principal: PrincipalDep
) -> EnvironmentOut:
    return EnvironmentOut.of(services.registry.create_environment(principal, body.to_spec()))


@router.get("", summary="List environments by name")
def list_environments(services: ServicesDep, principal: PrincipalDep) -> EnvironmentList:
    envs = services.registry.list_environments(principal)
    return EnvironmentList(items=[EnvironmentOut.of(e) for e in envs])


@router.get("/{ref}", summary="Get an environment (by id or name)")
def get_environment(ref: str, services: ServicesDep, principal: PrincipalDep) -> EnvironmentOut:
    return EnvironmentOut.of(services.registry.get_environment(principal, ref))


@router.patch(
    "/{ref}",
    summary="Change an environment; jobs that start afterwards get the new configuration",
)
def update_environment(
    ref: str, body: EnvironmentUpdate, services: ServicesDep, principal: PrincipalDep
) -> EnvironmentOut:
    changes = body.model_dump(exclude_unset=True)
    return EnvironmentOut.of(services.registry.update_environment(principal, ref, **changes))


@router.delete(
    "/{ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an environment (409 while unfinished jobs use it)",
)
def delete_environment(ref: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    services.registry.delete_environment(principal, ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
