"""``/v1/monitoring``: what needs attention."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.service.monitoring import overdue_models

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"], responses=ERRORS)


class OverdueOut(BaseModel):
    model_id: str
    model: str
    expected_interval_minutes: int
    last_success_at: datetime | None
    due_at: datetime


class OverdueList(BaseModel):
    items: list[OverdueOut]


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
