"""The web dashboard: server-rendered pages (Jinja2, htmx for the live parts) under
``/ui``, calling the same services as ``/v1``. ``install`` mounts it on the app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from jobyard.service.notifications import load_or_create_secret
from jobyard.service.sessions import SessionService
from jobyard.wiring import Runtime


def install(app: FastAPI, runtime: Runtime) -> None:
    from jobyard.web import admin, auth, catalog, jobs, submit
    from jobyard.web.base import HERE, PREFIX, WebState

    secret = load_or_create_secret(runtime.settings.data_dir, "web_secret")
    app.state.web = WebState(runtime, SessionService(runtime.auth, runtime.clock, secret))
    for module in (auth, jobs, submit, catalog, admin):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
