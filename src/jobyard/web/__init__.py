"""The web dashboard: server-rendered pages (Jinja2, htmx for the live parts) under
``/ui``, calling the same services as ``/v1``. ``install`` mounts it on the app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from jobyard.wiring import Services


def install(app: FastAPI, services: Services) -> None:
    """Mount the pages and their static files; the session service is made on the
    first request (``base.web_state``)."""
    from jobyard.api.routers import add_routes
    from jobyard.web import admin, auth, catalog, jobs, submit
    from jobyard.web.base import HERE, PREFIX

    app.state.web_services = services
    for module in (auth, jobs, submit, catalog, admin):
        add_routes(app, module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
