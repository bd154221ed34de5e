"""The FastAPI application."""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from jobyard import __version__
from jobyard.api import errors
from jobyard.api.compat import history, insights_hub, mindzie, prediction
from jobyard.api.compat import ray as ray_compat
from jobyard.api.metrics import metrics_route
from jobyard.api.routes import (
    admin,
    definitions,
    environments,
    folders,
    health,
    jobs,
    models,
    monitoring,
    notifications,
    results,
    stream,
    system,
)
from jobyard.wiring import Runtime

MAX_BODY_BYTES = 1024 * 1024
#: uploads stream to storage with their own size limit
UPLOAD_PATHS = re.compile(
    r"^/(v1/(folders/[^/]+/files(/.*)?|models/[^/]+/versions/?)|api/packages/[^/]+/[^/]+)$"
)


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="jobyard",
        version=__version__,
        description="Self-hosted, multi-tenant job execution service. Authenticate with "
        "`Authorization: Bearer <api key>`.",
    )
    app.state.runtime = runtime
    app.add_middleware(BodyLimit)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(results.router)
    app.include_router(models.router)
    app.include_router(environments.router)
    app.include_router(folders.router)
    app.include_router(definitions.router)
    app.include_router(monitoring.router)
    app.include_router(notifications.router)
    app.include_router(system.router)
    metrics_route(app, runtime, public=runtime.settings.metrics_public)
    app.include_router(stream.router)
    app.include_router(admin.router)
    app.include_router(prediction.router)
    app.include_router(insights_hub.router)
    app.include_router(history.router)
    app.include_router(mindzie.router)
    app.include_router(ray_compat.router)

    return app


class BodyLimit:
    """413 for a request whose declared body is over the limit (uploads excepted); a
    plain ASGI middleware, so it costs next to nothing per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not UPLOAD_PATHS.match(scope["path"]):
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                    response = errors.error_response(
                        413,
                        "PAYLOAD_TOO_LARGE",
                        f"the request body is larger than {MAX_BODY_BYTES} bytes",
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
