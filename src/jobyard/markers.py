"""Marker lines: how any job (any language, a shell script, a notebook) reports to
jobyard through its stdout.

A marker is one line that starts with ``::jobyard::`` followed by a JSON object with a
``type`` key, for example::

    ::jobyard::{"type": "progress", "percent": 40, "stage": "scoring"}
    ::jobyard::{"type": "cell", "index": 3, "status": "started"}

The executor reads the job's log, applies each marker, and leaves the line in the log.
Lines that look like markers but do not parse are kept as ordinary output.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "::jobyard::"


def format_marker(type_: str, **fields: Any) -> str:
    """The marker line (without newline) for ``type_`` and ``fields``."""
    return PREFIX + json.dumps({"type": type_, **fields}, separators=(",", ":"), default=str)


def parse_marker(line: str) -> dict[str, Any] | None:
    """The marker's object, or None if ``line`` is not a valid marker."""
    text = line.strip()
    if not text.startswith(PREFIX):
        return None
    try:
        value = json.loads(text[len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value


def emit(type_: str, **fields: Any) -> None:
    """Print a marker line to stdout and flush (for code running inside a job)."""
    print(format_marker(type_, **fields), flush=True)
