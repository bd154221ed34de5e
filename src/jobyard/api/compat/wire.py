"""What several compatibility routers write the same way: times with milliseconds, and
errors that name the spec's field instead of jobyard's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import overload

from jobyard import errors


@overload
def iso_ms(value: datetime) -> str: ...
@overload
def iso_ms(value: datetime | None) -> str | None: ...
def iso_ms(value: datetime | None) -> str | None:
    """``2018-10-01T12:00:00.001Z``: UTC with milliseconds (None stays None)."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def spec_error(exc: errors.InvalidInput, fields: Mapping[str, str]) -> errors.InvalidInput:
    """The same error naming the spec's field: ``fields`` maps jobyard's field names to
    the spec's; an indexed field keeps its index (``notifications.emails[0]`` →
    ``notifications.emailRecipients[0]``). An error about another field is unchanged."""
    native = exc.details.get("field")
    if not isinstance(native, str):
        return exc
    for ours, theirs in fields.items():
        if native == ours or native.startswith(ours + "["):
            field = theirs + native[len(ours) :]
            message = exc.message
            if message.startswith(native):
                message = field + message[len(native) :]
            else:
                message = f"{field}: {message}"
            return errors.InvalidInput(message, **{**exc.details, "field": field})
    return exc
