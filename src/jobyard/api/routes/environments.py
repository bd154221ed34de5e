"""`/v1/environments`."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.routes.jobs import ERRORS

router = APIRouter(prefix="/v1/environments", tags=["environments"], responses=ERRORS)  # type: ignore[arg-type]
