"""The web dashboard: server-rendered pages (Jinja2, htmx for the live parts) under
``/ui``, calling the same services as ``/v1``. ``install`` puts it on the app.

Its modules are imported on the first request that reaches the dashboard (``/`` or a
path under ``/ui``), not at start (≈ 0.6 MB of an idle server's RSS, ``bench/README.md``):
until then one route (:class:`_Pages`) stands for all of its routes; the first request
loads them in its place, then goes to them. :func:`load` does it at once."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from jobyard.wiring import Services

#: the dashboard's path prefix (``web.base.PREFIX``, without importing it)
PREFIX = "/ui"
_MODULES = ("auth", "jobs", "submit", "catalog", "admin")


def install(app: FastAPI, services: Services) -> None:
    """Put the dashboard on the app, to be loaded on its first request; the session
    service is made on the first request too (``base.web_state``)."""
    app.state.web_services = services
    app.router.routes.append(_Pages(app))


def is_dashboard(path: str) -> bool:
    """Whether ``path`` is one of the dashboard's (all its routes are)."""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


def load(app: FastAPI) -> None:
    """Put the dashboard's routes and static files on the app, where :func:`install`
    left their stand-in (nothing if they are there already)."""
    _put(app, _routes())


def _routes() -> list[BaseRoute]:
    """The dashboard's routes in their order, its modules imported (safe in a thread)."""
    from fastapi.staticfiles import StaticFiles
    from starlette.routing import Mount

    from jobyard.api.routers import routes_of

    modules = [importlib.import_module(f"jobyard.web.{name}") for name in _MODULES]
    from jobyard.web.base import HERE

    routes = [route for module in modules for route in routes_of(module.router)]
    static = Mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
    return [*routes, static]


def _put(app: FastAPI, routes: list[BaseRoute]) -> None:
    """Replace the stand-in with ``routes`` (on the event loop's thread, or before it
    runs: the router reads this list there)."""
    held = app.router.routes
    at = next((i for i, route in enumerate(held) if isinstance(route, _Pages)), None)
    if at is not None:
        held[at : at + 1] = routes


class _Pages(BaseRoute):
    """Stands for the dashboard's routes until the first request that reaches them."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._loading: asyncio.Future[None] | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket") and is_dashboard(scope["path"]):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._loading is None:  # the first request: import in a thread, put here
            self._loading = asyncio.ensure_future(self._load())
        try:
            await asyncio.shield(self._loading)
        except Exception:
            self._loading = None  # the next request tries again
            raise
        await self._app.router(scope, receive, send)  # now to the dashboard's route

    async def _load(self) -> None:
        from starlette.concurrency import run_in_threadpool

        _put(self._app, await run_in_threadpool(_routes))
