"""``/v1/system/status``: health, nodes, queue, performance and resources.

Job figures are the caller's tenant's only; nodes, slots and the machine are shared
infrastructure. Durations are milliseconds, sizes bytes, times UTC ISO 8601.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from jobyard.api.deps import PrincipalDep, ServicesDep, StatusServiceDep
from jobyard.api.schemas.base import ErrorOut
from jobyard.api.schemas.system import SystemStatusOut

RESPONSES: dict[int | str, dict[str, Any]] = {c: {"model": ErrorOut} for c in (401, 403, 503)}
router = APIRouter(prefix="/v1/system", tags=["system"], responses=RESPONSES)


@router.get("/status", summary="System status: health, nodes, queue, performance, resources")
def system_status(
    principal: PrincipalDep,
    services: ServicesDep,
    service: StatusServiceDep,
) -> SystemStatusOut:
    return SystemStatusOut.of(service.status(principal), services.sandbox)
