"""The FastAPI application."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard import __version__, memory, web
from jobyard.api import docs, errors
from jobyard.api.accesslog import AccessLog
from jobyard.api.compat import history, insights_hub, mindzie, prediction
from jobyard.api.compat import ray as ray_compat
from jobyard.api.fast_reads import FastReads
from jobyard.api.fast_submit import FastSubmit
from jobyard.api.metrics import metrics_route
from jobyard.api.routers import add_routes
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
from jobyard.api.schemas.base import ErrorOut
from jobyard.wiring import Services

JSON = "application/json"
MAX_BODY_BYTES = 1024 * 1024
#: a batch of up to 1,000 jobs may be larger
BATCH_PATH = "/v1/jobs/batch"
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024
#: uploads stream to storage with their own size limit
UPLOAD_PATHS = re.compile(
    r"^/(v1/(folders/[^/]+/files(/.*)?|models/[^/]+/versions/?)|api/packages/[^/]+/[^/]+)$"
)


class App(FastAPI):
    """The FastAPI application behind a thin front (:attr:`front`): the access log, then
    the fast paths of the job reads (``FastReads``: most ``GET /v1/jobs/{id}`` and
    ``GET /v1/jobs``) and of the plain submit (``FastSubmit``: most ``POST /v1/jobs``),
    which answer without FastAPI's and Starlette's middleware stack (≈ 1/10 of the
    server's CPU per submit) and hand every other request to :meth:`framework`, the
    whole stack. FastAPI's native OpenTelemetry spans (only when a provider is
    configured; jobyard configures none) do not cover the fast paths."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None:
            await super().__call__(scope, receive, send)
        else:
            await front(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The FastAPI application with its middleware stack, without the front."""
        await super().__call__(scope, receive, send)


def create_app(services: Services) -> App:
    app = App(
        title="jobyard",
        version=__version__,
        description="Self-hosted, multi-tenant job execution service. Authenticate with "
        "`Authorization: Bearer <api key>`.",
        docs_url=None,  # docs.install: Swagger UI from the package, not a CDN
    )
    app.state.services = services
    app.add_middleware(BodyLimit)
    front: ASGIApp = FastReads(FastSubmit(app.framework, services, MAX_BODY_BYTES), services)
    if services.settings.access_log:
        front = AccessLog(front)  # outermost: it sees the fast submits too
    app.front = front
    errors.install(app)
    docs.install(app)
    first = (health, jobs, results, models, environments, folders, definitions, monitoring)
    for module in (*first, notifications, system):
        add_routes(app, module.router)
    metrics_route(app, services, public=services.settings.metrics_public)
    for module in (stream, admin, prediction, insights_hub, history, mindzie, ray_compat):
        add_routes(app, module.router)
    web.install(app, services)

    _document_errors(app)
    _build_schema_apart(app)
    return app


def _build_schema_apart(app: FastAPI) -> None:
    """The OpenAPI schema is built once, in a forked child (``memory.built_apart``): the
    ≈ 7.5 MB that building it leaves in the heap stay there. The child gzips the
    schema's JSON text; the server keeps that (≈ 20 KB, against ≈ 0.23 MB as text) and
    answers ``/openapi.json`` with it as it is (``Content-Encoding: gzip``) to a client
    that takes gzip, else with the text decompressed; ``app.openapi()`` parses it for
    the few callers that want the objects (``bench/idle_rss.py``). Reading it from the
    child leaves free heap behind, given back at once (``memory.give_back``: once per
    process)."""
    build = app.openapi
    packed: list[bytes] = []

    def schema_gzip() -> bytes:
        if not packed:
            packed.append(memory.built_apart(build, gzip=True))
            memory.give_back()
        return packed[0]

    def schema_text() -> bytes:
        return zlib.decompress(schema_gzip(), memory.GZIP_WBITS)

    def openapi() -> dict[str, Any]:
        schema: dict[str, Any] = json.loads(schema_text())
        return schema

    routes = app.router.routes
    at = next(
        (i for i, r in enumerate(routes) if getattr(r, "path", None) == app.openapi_url), None
    )
    if at is not None:
        framework_route = routes[at]
        assert isinstance(framework_route, Route)

        async def openapi_json(request: Request) -> Response:
            if request.scope.get("root_path", "").rstrip("/"):  # behind a proxy's prefix
                answer: Response = await framework_route.endpoint(request)
                return answer
            if takes_gzip(request.headers.get("accept-encoding", "")):
                body = await run_in_threadpool(schema_gzip)
                return Response(body, media_type=JSON, headers=_GZIPPED)
            text = await run_in_threadpool(schema_text)
            return Response(text, media_type=JSON, headers=_VARY)

        routes[at] = Route(framework_route.path, openapi_json, include_in_schema=False)
    app.openapi = openapi  # type: ignore[method-assign]


_VARY = {"Vary": "Accept-Encoding"}
_GZIPPED = {"Content-Encoding": "gzip", **_VARY}


def takes_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``gzip`` or ``*``, not with
    ``q=0``; an explicit ``gzip;q=0`` refuses it whatever ``*`` says)."""
    star = False
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = coding.lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            taken = float(q) > 0
        except ValueError:
            taken = False
        if coding == "*":
            star = taken
        else:
            return taken
    return star


def _document_errors(app: FastAPI) -> None:
    """Every operation may answer an error it does not list (a malformed body is 400, a
    full quota 429, …): the schema says so with a ``default`` response in the one error
    shape (plain text on the Ray routes, as Ray's server answers)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
        default = {
            "description": "An error: `{code, message, details}` (plain text on Ray's routes)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation["responses"].setdefault("default", default)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class BodyLimit:
    """413 for a request whose declared body is over the limit (uploads excepted); a
    plain ASGI middleware, so it costs next to nothing per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or UPLOAD_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        limit = MAX_BATCH_BODY_BYTES if scope["path"] == BATCH_PATH else MAX_BODY_BYTES
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # a body without a declared length (chunked): read it up to the limit first
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = errors.error_response(
            413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {limit} bytes"
        )
        await response(scope, receive, send)
