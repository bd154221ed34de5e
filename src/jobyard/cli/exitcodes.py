"""Exit codes of the ``jobyard`` CLI (documented in ``docs/reference/cli.md``)."""

from __future__ import annotations

from jobyard.sdk.errors import (
    APIError,
    Forbidden,
    ServerUnavailable,
    Unauthenticated,
)

OK = 0  #: success; with ``submit --wait``: the job succeeded
JOB_FAILED = 1  #: the job failed (non-zero exit, could not start, node lost)
USAGE = 2  #: invalid command line (same as click's usage errors)
JOB_TIMED_OUT = 3  #: the job ran longer than its timeout
JOB_CANCELLED = 4  #: the job was cancelled
REFUSED = 5  #: the server refused the request (404, 409, 413, 422, 429 …)
AUTH_FAILED = 6  #: authentication or authorisation failed (401, 403)
UNAVAILABLE = 7  #: the server is unreachable or unavailable (connection error, 5xx)
INTERRUPTED = 130  #: stopped with Ctrl-C (the job itself keeps running)

_BY_STATUS = {
    "succeeded": OK,
    "failed": JOB_FAILED,
    "timed_out": JOB_TIMED_OUT,
    "cancelled": JOB_CANCELLED,
}


def for_status(status: str) -> int:
    """The exit code of ``submit --wait`` for a job that ended with ``status``."""
    return _BY_STATUS.get(status, JOB_FAILED)


def for_error(exc: APIError) -> int:
    """The exit code for an error of the server or of the connection."""
    if isinstance(exc, Unauthenticated | Forbidden):
        return AUTH_FAILED
    if isinstance(exc, ServerUnavailable):
        return UNAVAILABLE
    return REFUSED
