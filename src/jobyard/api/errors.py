"""The one table from errors to HTTP answers, and the one error shape."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobyard import errors

log = logging.getLogger("jobyard.api")

STATUS: dict[type[errors.JobyardError], int] = {
    errors.InvalidInput: 422,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.QuotaExceeded: 429,
    errors.StoreUnavailable: 503,
    errors.StorageUnavailable: 503,
    errors.StorageFull: 507,
    errors.ExecutorError: 500,
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "STORE_UNAVAILABLE",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"code": code, "message": message, "details": details or {}}
    return JSONResponse(body, status_code=status, headers=headers)


ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses, all in the one error shape. The shape
    is referenced, not given as a model: a model per status and route costs FastAPI a
    field each (megabytes over ~100 routes)."""
    return {
        code: {
            "description": _HTTP_CODES.get(code, "Error").replace("_", " ").capitalize(),
            "content": {"application/json": {"schema": ERROR_REF}},
        }
        for code in codes
    }


#: the error answers a route of the job APIs may give (native and compat routers)
ERRORS = error_responses(401, 403, 404, 409, 413, 422, 429, 503)


def status_of(exc: errors.JobyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _field(loc: tuple[object, ...] | list[object]) -> str:
    return ".".join(str(p) for p in loc)


def validation_problems(
    found: Sequence[Any], prefix: tuple[object, ...] = ()
) -> tuple[str, list[dict[str, Any]]]:
    """The message and ``details.errors`` of a VALIDATION_ERROR for pydantic's errors
    (``prefix`` goes before each field, e.g. the index of a job in a batch)."""
    problems = [
        {
            "field": _field((*prefix, *e.get("loc", ()))),
            "message": str(e.get("msg", "invalid")),
            "type": e.get("type"),
        }
        for e in found
    ]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
    return message, problems


def error_of(exc: errors.JobyardError) -> JSONResponse:
    """The answer to one of jobyard's errors (``Retry-After`` where a retry may help)."""
    status = status_of(exc)
    retry_after = str(exc.details.get("retry_after", 1))
    headers = {"Retry-After": retry_after} if status in (429, 503, 507) else None
    return error_response(status, exc.code, exc.message, dict(exc.details), headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.JobyardError)
    async def jobyard_error(_request: Request, exc: errors.JobyardError) -> JSONResponse:
        return error_of(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = validation_problems(exc.errors())
        return error_response(422, "VALIDATION_ERROR", message, {"errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RecursionError)
    async def too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return error_response(422, "VALIDATION_ERROR", "body: the JSON nests too deeply")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc)


def internal_error(exc: BaseException) -> JSONResponse:
    """The answer to an error no handler expected (logged with its traceback)."""
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "internal server error; see the server log")
