"""Event streams (Server-Sent Events, ``docs/reference/events.md``): a small SSE parser,
:class:`StreamEvent`, and :class:`EventStream`, which ``Client.stream_events`` returns
(``Client.watch`` follows one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from jobyard.sdk.errors import APIError

#: read timeout of a stream (at least): the server sends a heartbeat every 15 s
STREAM_READ_TIMEOUT_S = 45.0

OnEvent = Callable[["StreamEvent"], None]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched SSE message. ``id`` is the last event id seen so far on the stream
    (what ``Last-Event-ID`` would resume from), as in the HTML standard."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """SSE messages from the lines of a ``text/event-stream`` (without line endings):
    ``event:``, ``data:`` (joined with newlines), ``id:``, ``retry:``, ``:`` comments;
    a blank line dispatches; a message without data is not dispatched."""
    event, last_id, retry = "", None, None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id, retry)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)


@dataclass(frozen=True)
class StreamEvent:
    """An event of a stream: ``kind`` is ``state``, ``progress``, ``cell``, …, ``log``
    (``data``: text, offset, next_offset, attempt) or ``end`` (``data``: job_id, status)."""

    kind: str
    data: dict[str, Any]
    last_event_id: str | None = None  #: resume point (pass it as ``after``)

    @property
    def seq(self) -> int | None:
        """The event's ``seq`` (None for ``log`` and ``end``)."""
        seq = self.data.get("seq")
        return seq if isinstance(seq, int) else None

    @property
    def job_id(self) -> str | None:
        value = self.data.get("job_id")
        return value if isinstance(value, str) else None

    @property
    def to_state(self) -> str | None:
        """The new status of a ``state`` event."""
        value = self.data.get("to_state")
        return value if isinstance(value, str) else None


class EventStream(Iterator[StreamEvent]):
    """An open stream: iterate it for the events; close it (or use ``with``) to disconnect.

    Made by ``Client.stream_events`` from the open answer ``resp``; ``connection_error``
    turns a broken connection into the client's :class:`ConnectionFailed`. With ``ends``
    the iteration stops after the ``end`` event (a job's stream)."""

    def __init__(
        self,
        resp: httpx.Response,
        *,
        ends: bool,
        connection_error: Callable[[httpx.TransportError], APIError],
    ) -> None:
        self._resp = resp
        self._connection_error = connection_error
        self._events = self._read(ends)

    def _read(self, ends: bool) -> Iterator[StreamEvent]:
        try:
            for sse in parse_sse(self._resp.iter_lines()):
                try:
                    data = json.loads(sse.data)
                except ValueError as exc:
                    raise APIError(
                        f"the event stream {self._resp.url} sent an invalid event: {exc}",
                        status_code=self._resp.status_code,
                        code="BAD_RESPONSE",
                    ) from exc
                yield StreamEvent(sse.event, data if isinstance(data, dict) else {}, sse.id)
                if ends and sse.event == "end":
                    return
        except httpx.TransportError as exc:
            raise self._connection_error(exc) from exc
        finally:
            self._resp.close()

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
