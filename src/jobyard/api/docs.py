"""``/docs``: Swagger UI from the package's own copy (no CDN: it works without internet),
and the bearer security scheme in the OpenAPI schema, so that "Authorize" and "Try it
out" work.

The assets are a pinned, unmodified copy of the npm package ``swagger-ui-dist`` with its
licence (``static/swagger-ui/VERSION.txt`` says which and how to update it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

SWAGGER_UI_VERSION = "5.36.0"
ASSETS = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_PATH = "/docs/assets"
#: the files a browser may fetch (nothing else of the directory is served)
SERVED = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE"})
SCHEME = "bearerAuth"
CACHE = {"Cache-Control": "public, max-age=86400"}  # the URLs carry the version


def install(app: FastAPI) -> None:
    """``/docs``, ``/docs/oauth2-redirect`` and ``/docs/assets/{name}`` (create the app
    with ``docs_url=None``), and the security scheme in ``app.openapi()``."""
    assert app.docs_url is None, "create the app with docs_url=None"
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    async def docs(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css?v={SWAGGER_UI_VERSION}",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # no badge from the public validator service; the key stays across reloads
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    async def oauth2_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in SERVED:
            return Response(status_code=404)
        return FileResponse(ASSETS / name, headers=CACHE)

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", asset, include_in_schema=False)
    _declare_bearer(app)


def _declare_bearer(app: FastAPI) -> None:
    """The schema declares ``Authorization: Bearer <api key>`` as a security scheme, and
    each operation that reads the header requires it (instead of listing the header as a
    parameter, which Swagger UI would not send)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`jobyard serve` prints the first one and keeps it "
            "in credentials.json), or a running job's token.",
        }
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                params = operation.get("parameters", [])
                kept = [
                    p
                    for p in params
                    if not (
                        p.get("in") == "header" and p.get("name", "").lower() == "authorization"
                    )
                ]
                if len(kept) != len(params):
                    operation["parameters"] = kept
                    if not kept:
                        del operation["parameters"]
                    operation["security"] = [{SCHEME: []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
