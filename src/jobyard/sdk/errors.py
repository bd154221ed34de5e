"""Errors raised by the SDK, chosen by the API's stable error ``code`` (then HTTP status).

The names mirror ``jobyard.errors`` on the server::

    APIError
    ├── InvalidInput (422) ── PayloadTooLarge (413)
    ├── Unauthenticated (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409) ── InvalidTransition, StaleState, IdempotencyConflict
    ├── RateLimited (429) ── QuotaExceeded
    └── ServerUnavailable (5xx) ── StoreUnavailable (503), ConnectionFailed (no answer)
"""

from __future__ import annotations

from typing import Any

import httpx


class APIError(Exception):
    """The server refused or failed a request."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or (f"HTTP_{status_code}" if status_code else "ERROR")
        self.details = details or {}
        self.retry_after = retry_after  #: seconds, from ``Retry-After`` when the server sent it


class InvalidInput(APIError):
    """The request is not valid (422)."""


class PayloadTooLarge(InvalidInput):
    """The request body is over the server's limit (413)."""


class Unauthenticated(APIError):
    """No valid API key (401)."""


class Forbidden(APIError):
    """The API key may not do this (403)."""


class NotFound(APIError):
    """No such object (404)."""


class Conflict(APIError):
    """The object's state forbids the operation (409)."""


class InvalidTransition(Conflict):
    """The job cannot move to the requested state, e.g. cancelling an ended job."""


class StaleState(Conflict):
    """The job changed while the operation was in progress; retry it."""


class IdempotencyConflict(Conflict):
    """The idempotency key was already used with a different body."""


class RateLimited(APIError):
    """Too many requests (429); ``retry_after`` says when to try again."""


class QuotaExceeded(RateLimited):
    """A limit of the tenant is reached (429)."""


class ServerUnavailable(APIError):
    """The server failed or is unavailable (5xx); the request may be retried."""


class StoreUnavailable(ServerUnavailable):
    """The server's database is unavailable (503); retry with the same idempotency key."""


class ConnectionFailed(ServerUnavailable):
    """The server could not be reached at all."""


_BY_CODE: dict[str, type[APIError]] = {
    "INVALID_INPUT": InvalidInput,
    "VALIDATION_ERROR": InvalidInput,
    "PAYLOAD_TOO_LARGE": PayloadTooLarge,
    "UNAUTHENTICATED": Unauthenticated,
    "FORBIDDEN": Forbidden,
    "NOT_FOUND": NotFound,
    "CONFLICT": Conflict,
    "INVALID_TRANSITION": InvalidTransition,
    "STALE_STATE": StaleState,
    "IDEMPOTENCY_KEY_REUSED": IdempotencyConflict,
    "RATE_LIMITED": RateLimited,
    "QUOTA_EXCEEDED": QuotaExceeded,
    "STORE_UNAVAILABLE": StoreUnavailable,
    "STORAGE_UNAVAILABLE": StoreUnavailable,
}

_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
}


def error_class(status_code: int, code: str | None) -> type[APIError]:
    """The exception class for an error answer: by ``code``, else by status."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServerUnavailable
    return APIError


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def raise_for_response(resp: httpx.Response, auth_hint: str | None = None) -> None:
    """Raise the matching :class:`APIError` if ``resp`` is a 4xx/5xx answer.

    Reads the ``{"code", "message", "details"}`` body; falls back to the text body.
    ``auth_hint`` (where the client looked for its API key) goes before the message of
    a 401.
    """
    if resp.status_code < 400:
        return
    code: str | None = None
    message = ""
    details: dict[str, Any] = {}
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        raw_message = body.get("message", body.get("detail"))
        message = raw_message if isinstance(raw_message, str) else ""
        if isinstance(body.get("details"), dict):
            details = body["details"]
        elif "detail" in body and not isinstance(body["detail"], str):
            details = {"detail": body["detail"]}
    if not message:
        text = resp.text.strip()
        message = text.splitlines()[0][:500] if text else (resp.reason_phrase or "error")
        message = f"HTTP {resp.status_code}: {message}"
    if resp.status_code == 401 and auth_hint:
        message = f"{auth_hint} ({message})"
    raise error_class(resp.status_code, code)(
        message,
        status_code=resp.status_code,
        code=code,
        details=details,
        retry_after=_retry_after(resp),
    )
