"""Wire models of the delivery log of a job's notifications."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from jobyard.store.notifications import Delivery


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
