"""Routers put on the app once: their routes as they are, not built a second time."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Append ``router``'s routes to the app's, in their order.

    ``app.include_router`` keeps the router and, on the first request that reaches it,
    builds each of its routes again (dependencies, parameters, response model) for the
    app: ≈ 2 MB for jobyard's ≈ 100 routes, beside the routes the router built when its
    module was imported. jobyard's routers take their prefix, tags, responses and
    dependencies in ``APIRouter(...)``, which its routes already carry, and have no
    event handlers or nested routers: what ``include_router`` would build is what they
    hold. (Not carried over: ``app.dependency_overrides``, which jobyard does not use.)
    """
    app.router.routes.extend(routes_of(router))


def routes_of(router: APIRouter) -> list[BaseRoute]:
    """``router``'s routes, to be put on an app as they are (see :func:`add_routes`)."""
    if router.on_startup or router.on_shutdown:
        raise ValueError("a router with event handlers needs app.include_router")
    for route in router.routes:
        if not isinstance(route, APIRoute | APIWebSocketRoute):
            raise TypeError(f"{route!r} is not a route of its own: use app.include_router")
    return list(router.routes)
