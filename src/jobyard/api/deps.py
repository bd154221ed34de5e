"""Request dependencies: the runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from jobyard.domain.auth import Principal
from jobyard.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
) -> Principal:
    return runtime.auth.authenticate(authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
