"""The web pages' plumbing: templates, the signed-in user of a request, CSRF checks, and
errors shown as pages (a sign-in redirect for a page read without a session)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from jobyard import errors
from jobyard.api.deps import check_user
from jobyard.api.errors import status_of
from jobyard.domain.auth import ROLE_RANK, Principal, Role
from jobyard.service.notifications import load_or_create_secret
from jobyard.service.sessions import Session, SessionService
from jobyard.web import view
from jobyard.wiring import Services

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
SESSION_COOKIE = "jobyard_session"
SIGNIN_COOKIE = "jobyard_signin"  #: the sign-in form's CSRF nonce
PREFIX = "/ui"
#: on every page: scripts only from the package's own files (no inline script), no
#: framing (clickjacking), forms only to this server
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def templates() -> Jinja2Templates:
    """The templates, loaded on the first page (a server nobody browses keeps Jinja2 and
    the compiled templates out of its memory)."""
    from fastapi.templating import Jinja2Templates as Templates

    found = Templates(directory=str(HERE / "templates"))
    view.install_filters(found.env)
    return found


@dataclass
class WebState:
    services: Services
    sessions: SessionService


def web_state(request: Request) -> WebState:
    """The app's services and session service (made on first use: the signing secret is
    ``JOBYARD_WEB_SECRET``, else ``<data_dir>/web_secret``, created once)."""
    app_state = request.app.state
    state = getattr(app_state, "web", None)
    if not isinstance(state, WebState):
        services: Services = app_state.web_services
        settings = services.settings
        secret = (
            settings.web_secret.encode()
            if settings.web_secret
            else load_or_create_secret(settings.data_dir, "web_secret")
        )
        state = WebState(services, SessionService(services.auth, services.clock, secret))
        app_state.web = state
    return state


@dataclass
class User:
    """The signed-in user of a request."""

    principal: Principal
    session: Session
    csrf: str
    services: Services

    @property
    def can_write(self) -> bool:
        return self.principal.role is not Role.VIEWER

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.principal.role] >= ROLE_RANK[Role(role)]

    @property
    def is_admin(self) -> bool:
        return self.at_least("admin")


async def _user(request: Request) -> User:
    state = web_state(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    principal, session = await run_in_threadpool(state.sessions.read, cookie)
    check_user(principal, "GET")
    return User(principal, session, state.sessions.csrf_token(session.nonce), state.services)


async def _poster(request: Request) -> User:
    """A user who sent a form with the session's CSRF token."""
    user = await _user(request)
    form = await request.form()
    token = form.get("csrf")
    web_state(request).sessions.check_csrf(
        user.session.nonce, token if isinstance(token, str) else None
    )
    return user


async def _writer(request: Request) -> User:
    """A user who sent a form with the session's CSRF token and whose role may change
    things (the API's rule: a viewer may only read)."""
    user = await _poster(request)
    check_user(user.principal, request.method)
    return user


UserDep = Annotated[User, Depends(_user)]
PosterDep = Annotated[User, Depends(_poster)]
WriterDep = Annotated[User, Depends(_writer)]


def page(
    request: Request,
    name: str,
    user: User | None,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = {"user": user, "now": user.services.clock.now() if user else None, **(context or {})}
    if ctx["now"] is None:
        ctx["now"] = web_state(request).services.clock.now()
    return templates().TemplateResponse(request, name, ctx, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class WebRoute(APIRoute):
    """Errors of a page become pages: a read without a session goes to the sign-in page,
    any other error is shown with its status and message (never a stack trace)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            response = await self._answer(handler, request)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle

    @staticmethod
    async def _answer(
        handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
    ) -> Response:
        try:
            return await handler(request)
        except errors.Unauthenticated as e:
            if request.method == "GET" and not _is_stream(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response: Response = see_other(f"{PREFIX}/sign-in?next={quote(target)}")
                if request.cookies.get(SESSION_COOKIE):
                    response.delete_cookie(SESSION_COOKIE, path="/")
                return response
            return _error(request, 401, e.message)
        except errors.JobyardError as e:
            return _error(request, status_of(e), e.message)
        except RequestValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors()
            )
            return _error(request, 400, problems or "the request is not valid")


def _is_stream(request: Request) -> bool:
    return request.url.path.endswith("/live")


def _error(request: Request, status: int, message: str) -> Response:
    title = {401: "Sign in", 403: "Not allowed", 404: "Not found", 409: "Conflict"}.get(
        status, "Something went wrong" if status >= 500 else "Cannot do that"
    )
    return templates().TemplateResponse(
        request,
        "error.html",
        {"user": None, "status": status, "title": title, "message": message},
        status_code=status,
    )
