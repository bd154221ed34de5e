"""Sign in (an API key exchanged for a session cookie) and sign out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.concurrency import run_in_threadpool

from jobyard import errors
from jobyard.service.sessions import SESSION_TTL
from jobyard.web.base import (
    PREFIX,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    PosterDep,
    UserDep,
    WebRoute,
    page,
    see_other,
    templates,
    web_state,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard (no other site)."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/jobs"


@router.get("/")
def root(request: Request) -> Response:
    """The dashboard: the jobs page (which asks to sign in first when needed)."""
    return see_other(f"{PREFIX}/jobs")


@router.get(PREFIX)
@router.get(f"{PREFIX}/")
def ui_root() -> Response:
    return see_other(f"{PREFIX}/jobs")


def _signin_page(
    request: Request, next_: str | None, message: str | None, status_code: int = 200
) -> Response:
    nonce = secrets.token_urlsafe(16)
    sessions = web_state(request).sessions
    response = templates().TemplateResponse(
        request,
        "sign_in.html",
        {
            "user": None,
            "next": _safe_next(next_),
            "csrf": sessions.csrf_token(nonce),
            "message": message,
        },
        status_code=status_code,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=3600,
        path=f"{PREFIX}/sign-in",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(f"{PREFIX}/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:
    return _signin_page(request, next, None)


@router.post(f"{PREFIX}/sign-in")
async def sign_in(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    state = web_state(request)
    state.sessions.check_csrf(request.cookies.get(SIGNIN_COOKIE), csrf)
    try:
        _principal, _session, value = await run_in_threadpool(state.sessions.sign_in, api_key)
    except errors.Unauthenticated as e:
        return _signin_page(request, next, e.message, status_code=401)
    response = see_other(_safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGNIN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post(f"{PREFIX}/sign-out")
async def sign_out(request: Request, user: PosterDep) -> Response:
    response = see_other(f"{PREFIX}/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(f"{PREFIX}/me")
def me(request: Request, user: UserDep) -> Response:
    return page(request, "me.html", user)
