"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobyard.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process serves")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    details = runtime.sandbox.describe()
    if runtime.db.ping():
        return JSONResponse({"status": "ready", "details": details})
    return JSONResponse(
        {
            "code": "STORE_UNAVAILABLE",
            "message": "the database does not answer",
            "details": details,
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )
