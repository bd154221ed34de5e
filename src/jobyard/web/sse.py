"""Server-Sent Events carrying HTML fragments for htmx's SSE extension (``sse-swap``).
The polling and heartbeats are the API's event streams' own (``api/routes/stream.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import StreamingResponse

from jobyard.api.routes.stream import HEADERS
from jobyard.api.routes.stream import _heartbeats as heartbeats
from jobyard.web.base import templates


def fragment(event: str, html: str) -> str:
    """One SSE message whose data is ``html`` (each line its own ``data:`` line)."""
    lines = html.replace("\r", "").split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def render(name: str, **context: Any) -> str:
    return templates().get_template(name).render(**context)


def stream(poll: Callable[[], list[str] | None]) -> StreamingResponse:
    return StreamingResponse(heartbeats(poll), media_type="text/event-stream", headers=HEADERS)
