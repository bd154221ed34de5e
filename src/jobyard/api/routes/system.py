"""``/v1/system/status``: health, nodes, queue, performance and resources.

Job figures are the caller's tenant's only; nodes, slots and the machine are shared
infrastructure. Durations are milliseconds, sizes bytes, times UTC ISO 8601.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.schemas.base import ErrorOut
from jobyard.api.schemas.system import SystemStatusOut
from jobyard.service.status import SystemStatusService
from jobyard.wiring import Services

RESPONSES: dict[int | str, dict[str, Any]] = {c: {"model": ErrorOut} for c in (401, 403, 503)}
router = APIRouter(prefix="/v1/system", tags=["system"], responses=RESPONSES)


def status_service(app: FastAPI, services: Services) -> SystemStatusService:
    """The app's status service, made on first use (one per app, so that the CPU
    figure measures the time between two calls)."""
    service = getattr(app.state, "system_status", None)
    if not isinstance(service, SystemStatusService):
        service = SystemStatusService(
            db=services.db,
            clock=services.clock,
            settings=services.settings,
            node_id=services.node_id,
        )
        app.state.system_status = service
    return service


def get_status_service(request: Request, services: ServicesDep) -> SystemStatusService:
    return status_service(request.app, services)


@router.get("/status", summary="System status: health, nodes, queue, performance, resources")
def system_status(
    principal: PrincipalDep,
    services: ServicesDep,
    service: Annotated[SystemStatusService, Depends(get_status_service)],
) -> SystemStatusOut:
    return SystemStatusOut.of(service.status(principal), services.sandbox)
