"""``/v1/jobs/{id}/notifications``: the delivery log of a job's notifications."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.api.schemas.notifications import DeliveryList, DeliveryOut
from jobyard.service.notifications import delivery_log

router = APIRouter(prefix="/v1/jobs", tags=["notifications"], responses=ERRORS)


@router.get("/{job_id}/notifications", summary="The job's notification deliveries")
def job_notifications(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    services.jobs.get(principal, job_id)  # 404 unless it is the caller's job
    items = delivery_log(services.db, principal.tenant_id, job_id)
    return DeliveryList(items=[DeliveryOut.of(d) for d in items])
