"""``/v1/jobs/{id}/notifications``: the delivery log of a job's notifications."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.routes.jobs import ERRORS
from jobyard.service.notifications import delivery_log
from jobyard.store.notifications import Delivery

router = APIRouter(prefix="/v1/jobs", tags=["notifications"], responses=ERRORS)


class DeliveryOut(BaseModel):
    id: str
    channel: str = Field(description="webhook or email")
    target: str = Field(description="The webhook URL without its query string, or the address")
    event: str = Field(description="job.succeeded, job.failed, job.timed_out or job.cancelled")
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_error: str | None = Field(description="The error of the latest failed attempt")
    response_status: int | None = Field(description="HTTP status of the latest webhook answer")
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            channel=d.channel,
            target=d.target,
            event=d.event,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            response_status=d.response_status,
            created_at=d.created_at,
            updated_at=d.updated_at,
            next_attempt_at=d.next_attempt_at,
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


@router.get("/{job_id}/notifications", summary="The job's notification deliveries")
def job_notifications(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    services.jobs.get(principal, job_id)  # 404 unless it is the caller's job
    items = delivery_log(services.db, principal.tenant_id, job_id)
    return DeliveryList(items=[DeliveryOut.of(d) for d in items])
