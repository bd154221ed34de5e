"""`/v1/folders`."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.routes.jobs import ERRORS

router = APIRouter(prefix="/v1/folders", tags=["folders"], responses=ERRORS)  # type: ignore[arg-type]
