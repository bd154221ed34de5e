"""The jobyard error tree.

Every error the service raises on purpose is a :class:`JobyardError`; the API maps
the tree to HTTP in one table (``api/errors.py``) and the SDK maps the stable
``code`` back to the same classes. The class docstring is the default message.

* JobyardError
  + InvalidInput            (422)  a request that cannot be accepted as given
  + Unauthenticated         (401)  no key, unknown, revoked or expired key
  + Forbidden               (403)  the key may not do this
  + NotFound                (404)  no such object (or not visible to the caller)
  + Conflict                (409)  the object's state forbids the operation
    - InvalidTransition     (409)  the state machine refuses the change
    - StaleState            (409)  someone else changed the job first
    - IdempotencyConflict   (409)  an idempotency key reused with another body
  + QuotaExceeded           (429)  a tenant limit is reached
    - RateLimited           (429)  too many requests for the key
  + StoreUnavailable        (503)  the database cannot be reached or the outcome is unknown
    - StorageUnavailable    (503)  the file storage (--storage-url) cannot be read or written
    - StorageFull           (507)  the disk is full
  + ExecutorError                  a job could not be started or stopped
"""

from __future__ import annotations

from typing import Any


class JobyardError(Exception):
    """Something went wrong in jobyard."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


class InvalidInput(JobyardError):
    """The request is not valid."""

    code = "INVALID_INPUT"


class ValidationFailed(InvalidInput):
    """A request body does not match its schema (a job of a batch, e.g.)."""

    code = "VALIDATION_ERROR"


class Unauthenticated(JobyardError):
    """A valid API key is required (Authorization: Bearer <key>)."""

    code = "UNAUTHENTICATED"


class Forbidden(JobyardError):
    """This API key may not perform this operation."""

    code = "FORBIDDEN"


class NotFound(JobyardError):
    """The object does not exist."""

    code = "NOT_FOUND"


class Conflict(JobyardError):
    """The object's current state does not allow this operation."""

    code = "CONFLICT"


class InvalidTransition(Conflict):
    """The job cannot move to the requested state from its current state."""

    code = "INVALID_TRANSITION"


class StaleState(Conflict):
    """The job changed while the operation was in progress; retry it."""

    code = "STALE_STATE"


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class QuotaExceeded(JobyardError):
    """A limit of the tenant is reached."""

    code = "QUOTA_EXCEEDED"


class RateLimited(QuotaExceeded):
    """Too many requests for this API key; retry later."""

    code = "RATE_LIMITED"


class StoreUnavailable(JobyardError):
    """The database is unavailable; the request may be retried."""

    code = "STORE_UNAVAILABLE"


class StorageFull(StoreUnavailable):
    """The server's disk is full: nothing can be written until space is freed."""

    code = "STORAGE_FULL"


class StorageUnavailable(StoreUnavailable, OSError):
    """The file storage cannot be read or written at the moment; retry later.

    Also an ``OSError``: the code that copes with a failed read or write of a file
    (a job's setup, the log shipper) copes with it the same way."""

    code = "STORAGE_UNAVAILABLE"


class ExecutorError(JobyardError):
    """The executor could not start or stop the job."""

    code = "EXECUTOR_ERROR"
