"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobyard.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process serves")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and the node can write")
def readyz(services: ServicesDep) -> JSONResponse:
    sandbox = services.sandbox.describe()
    ready = services.readiness.check()
    if ready.ready:
        return JSONResponse({"status": "ready", "details": sandbox})
    if not ready.reachable:
        body = {"code": "STORE_UNAVAILABLE", "message": "the database does not answer"}
    else:  # the details name what cannot write ("database", "data_dir") and why
        body = {"code": "NOT_READY", "message": "; ".join(ready.problems.values())}
    return JSONResponse(
        {**body, "details": {**sandbox, **ready.problems}},
        status_code=503,
        headers={"Retry-After": "1"},
    )
