"""`/v1/models`."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.routes.jobs import ERRORS

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERRORS)  # type: ignore[arg-type]
