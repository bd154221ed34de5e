"""Event streams (Server-Sent Events, ``docs/events.md``): a small SSE parser,
:class:`StreamEvent`, and :class:`StreamMixin` with ``stream_events`` and ``watch``.

The functions take any client (``open_event_stream(client, …)``), so they work before
and after :class:`StreamMixin` is part of ``Client``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from jobyard.sdk.base import BaseClient
from jobyard.sdk.errors import APIError, raise_for_response
from jobyard.sdk.models import Job

#: read timeout of a stream (at least): the server sends a heartbeat every 15 s
STREAM_READ_TIMEOUT_S = 45.0
_MAX_POLL_INTERVAL_S = 2.0

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


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(str(job_id), safe='')}{suffix}"


class EventStream(Iterator[StreamEvent]):
    """An open stream: iterate it for the events; close it (or use ``with``) to disconnect."""

    def __init__(self, client: BaseClient, resp: httpx.Response, *, ends: bool) -> None:
        self._client = client
        self._resp = resp
        self._events = self._read(ends)

    def _read(self, ends: bool) -> Iterator[StreamEvent]:
        try:
            for sse in parse_sse(self._resp.iter_lines()):
                try:
                    data = json.loads(sse.data)
                except ValueError as exc:
                    raise APIError(
                        f"the server at {self._client.url} sent an invalid event: {exc}",
                        status_code=self._resp.status_code,
                        code="BAD_RESPONSE",
                    ) from exc
                yield StreamEvent(sse.event, data if isinstance(data, dict) else {}, sse.id)
                if ends and sse.event == "end":
                    return
        except httpx.TransportError as exc:
            raise self._client._connection_error(exc) from exc
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


def open_event_stream(
    client: BaseClient,
    job_id: str | None = None,
    *,
    after: int | None = None,
    kinds: Sequence[str] | None = None,
) -> EventStream:
    """Connect to the events of one job (ending after its ``end`` event) or of all the
    tenant's jobs (never ending); see :meth:`StreamMixin.stream_events`."""
    path = _job_path(job_id, "/events/stream") if job_id is not None else "/v1/events/stream"
    params: dict[str, Any] = {"kind": list(kinds or ())}
    if after is not None:
        params["after"] = after
    timeout = httpx.Timeout(client._timeout, read=max(client._timeout, STREAM_READ_TIMEOUT_S))
    headers = {"Accept": "text/event-stream"}
    request = client._http.build_request(
        "GET", path, params=params, headers=headers, timeout=timeout
    )
    try:
        resp = client._http.send(request, stream=True)
    except httpx.TransportError as exc:
        raise client._connection_error(exc) from exc
    if resp.status_code >= 400:
        try:
            resp.read()
        finally:
            resp.close()
        raise_for_response(resp, client._auth_hint)
    return EventStream(client, resp, ends=job_id is not None)


def watch_job(
    client: BaseClient,
    job_id: str,
    on_event: OnEvent | None = None,
    *,
    kinds: Sequence[str] | None = None,
    poll_interval: float = 0.2,
) -> Job:
    """Follow the job's stream until its end and return the ended job; see
    :meth:`StreamMixin.watch`."""
    status: str | None = None
    try:
        events = open_event_stream(client, job_id, kinds=kinds)
    except APIError:  # no stream here (an older server, a fake): poll instead
        return _poll(client, job_id, on_event, poll_interval, status)
    with events:
        while True:
            try:
                event = next(events)
            except StopIteration:
                break
            except APIError:  # the stream broke: poll instead
                break
            status = event.to_state or status
            if on_event is not None:
                on_event(event)
            if event.kind == "end":
                return _get(client, job_id)
    return _poll(client, job_id, on_event, poll_interval, status)


def _get(client: BaseClient, job_id: str) -> Job:
    return client._call(Job, "GET", _job_path(job_id))


def _poll(
    client: BaseClient,
    job_id: str,
    on_event: OnEvent | None,
    poll_interval: float,
    status: str | None,
) -> Job:
    """Poll like ``Client.wait``; a change of status is passed on as a ``state`` event."""
    interval = poll_interval
    while True:
        job = _get(client, job_id)
        if on_event is not None and job.status != status:
            data = {"job_id": job.id, "from_state": status, "to_state": job.status}
            on_event(StreamEvent("state", {**data, "message": job.message}))
        status = job.status
        if job.is_terminal:
            return job
        time.sleep(interval)
        interval = min(interval * 1.5, max(poll_interval, _MAX_POLL_INTERVAL_S))


class StreamMixin(BaseClient):
    """Event streams."""

    def stream_events(
        self,
        job_id: str | None = None,
        *,
        after: int | None = None,
        kinds: Sequence[str] | None = None,
    ) -> EventStream:
        """Events as they happen. With ``job_id``: the job's events from the start (or
        after the seq ``after``) and its log output (kind ``log``), ending after the
        ``end`` event. Without: the events of all the tenant's jobs from now on (or after
        ``after``), never ending. ``kinds`` keeps only these kinds (``"log"`` included).
        Connects at once (errors such as :class:`NotFound` are raised here); close the
        stream (or use ``with``) to disconnect."""
        return open_event_stream(self, job_id, after=after, kinds=kinds)

    def watch(
        self,
        job_id: str,
        on_event: OnEvent | None = None,
        *,
        kinds: Sequence[str] | None = None,
        poll_interval: float = 0.2,
    ) -> Job:
        """Call ``on_event`` with each event of the job's stream until the job has ended,
        then return the ended job. If the stream is unavailable or breaks, poll the job
        instead (like :meth:`wait`), passing status changes on as ``state`` events."""
        return watch_job(self, job_id, on_event, kinds=kinds, poll_interval=poll_interval)
