"""The jobyard Python SDK: :class:`Client`, its models and errors.

Independent of the server code: it needs only httpx and pydantic.
"""

from __future__ import annotations

from jobyard.sdk.client import Client
from jobyard.sdk.config import find_server, write_credentials
from jobyard.sdk.errors import (
    APIError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServerUnavailable,
    StaleState,
    StoreUnavailable,
    Unauthenticated,
    raise_for_response,
)
from jobyard.sdk.models import (
    TERMINAL_STATUSES,
    Job,
    JobEvent,
    JobPage,
    JobSummary,
    LogChunk,
    Usage,
)

__all__ = [
    "TERMINAL_STATUSES",
    "APIError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidTransition",
    "Job",
    "JobEvent",
    "JobPage",
    "JobSummary",
    "LogChunk",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "RateLimited",
    "ServerUnavailable",
    "StaleState",
    "StoreUnavailable",
    "Unauthenticated",
    "Usage",
    "find_server",
    "raise_for_response",
    "write_credentials",
]
