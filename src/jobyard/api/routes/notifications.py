"""``/v1/jobs/{id}/notifications``: the delivery log of a job's notifications."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.deps import DeliveryLogDep, PrincipalDep
from jobyard.api.errors import ERRORS
from jobyard.api.schemas.notifications import DeliveryList, DeliveryOut

router = APIRouter(prefix="/v1/jobs", tags=["notifications"], responses=ERRORS)


@router.get("/{job_id}/notifications", summary="The job's notification deliveries")
def job_notifications(
    job_id: str, deliveries: DeliveryLogDep, principal: PrincipalDep
) -> DeliveryList:
    return DeliveryList(items=[DeliveryOut.of(d) for d in deliveries.of_job(principal, job_id)])
