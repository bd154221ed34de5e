"""The FastAPI application."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from jobyard import __version__
from jobyard.api import errors
from jobyard.api.routes import (
    definitions,
    environments,
    folders,
    health,
    jobs,
    models,
    monitoring,
    results,
)
from jobyard.wiring import Runtime

MAX_BODY_BYTES = 1024 * 1024
#: uploads stream to storage with their own size limit
UPLOAD_PATHS = re.compile(r"^/v1/(folders/[^/]+/files(/.*)?|models/[^/]+/versions/?)$")


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="jobyard",
        version=__version__,
        description="Self-hosted, multi-tenant job execution service. Authenticate with "
        "`Authorization: Bearer <api key>`.",
    )
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(results.router)
    app.include_router(models.router)
    app.include_router(environments.router)
    app.include_router(folders.router)
    app.include_router(definitions.router)
    app.include_router(monitoring.router)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > MAX_BODY_BYTES
            and not UPLOAD_PATHS.match(request.url.path)
        ):
            return errors.error_response(
                413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {MAX_BODY_BYTES} bytes"
            )
        return await call_next(request)

    return app
