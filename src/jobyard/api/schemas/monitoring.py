"""Wire models of ``/v1/monitoring``: what needs attention."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class OverdueOut(BaseModel):
    model_id: str
    model: str
    expected_interval_minutes: int
    last_success_at: datetime | None
    due_at: datetime


class OverdueList(BaseModel):
    items: list[OverdueOut]
