"""``/v1/monitoring``: what needs attention."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.monitoring import OverdueList, OverdueOut
from jobyard.service.monitoring import overdue_models

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"], responses=ERRORS)


@router.get(
    "/overdue-models", summary="Models whose expected interval passed without a successful job"
)
def overdue(services: ServicesDep, principal: PrincipalDep) -> OverdueList:
    found = overdue_models(
        principal,
        services.registry.list_models(principal),
        services.jobs.store,
        services.clock.now(),
    )
    return OverdueList(
        items=[
            OverdueOut(
                model_id=o.model.id,
                model=o.model.name,
                expected_interval_minutes=o.model.expected_interval_minutes or 0,
                last_success_at=o.last_success_at,
                due_at=o.due_at,
            )
            for o in found
        ]
    )
