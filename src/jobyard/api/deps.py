"""Request dependencies: the runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from jobyard import errors
from jobyard.domain.auth import Principal
from jobyard.wiring import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_caller(
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
) -> Principal:
    """An API key's principal, or a running job's (its token may only report)."""
    return runtime.auth.authenticate(authorization)


def get_principal(caller: Annotated[Principal, Depends(get_caller)]) -> Principal:
    if caller.job_id is not None:
        raise errors.Forbidden("a job token may only report progress, metrics and items of its job")
    return caller


PrincipalDep = Annotated[Principal, Depends(get_principal)]
#: accepts job tokens too (the report endpoint only)
ReporterDep = Annotated[Principal, Depends(get_caller)]
