"""``/v1/definitions``: job definitions (a model version with bound inputs, default
parameters and an optional cron schedule), and running them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.definitions import DefinitionIn, DefinitionList, DefinitionOut, RunIn
from jobyard.api.schemas.jobs import JobOut

router = APIRouter(prefix="/v1/definitions", tags=["definitions"], responses=ERRORS)


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
