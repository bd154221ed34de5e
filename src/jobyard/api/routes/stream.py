"""Server-Sent Events: one job's timeline and log (``/v1/jobs/{id}/events/stream``) and
the tenant's timeline (``/v1/events/stream``). See ``docs/reference/events.md``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from jobyard import errors
from jobyard.api.bounds import MAX_INT32, ByteOffset, Seq
from jobyard.api.deps import PrincipalDep, ServicesDep
from jobyard.api.errors import error_responses
from jobyard.api.params import split_values
from jobyard.api.schemas.jobs import EventOut
from jobyard.domain.jobs import JobEvent
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.service.stream import MAX_BATCH, EventFilter, JobFollower, LogText, StreamService

POLL_S = 0.05  #: database poll interval of a stream that has nothing new
HEARTBEAT_S = 15.0  #: a ``: keep-alive`` comment after this long without a message
STORE_RETRY_S = 1.0  #: wait after the database was unavailable, then poll again
LOG_KIND = "log"
E = TypeVar("E", JobState, Priority)

log = logging.getLogger("jobyard.api.stream")
ERRORS = error_responses(401, 404, 422, 503)
SSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}}
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
router = APIRouter(tags=["events"], responses={**ERRORS, **SSE})  # type: ignore[dict-item]

Repeated = Annotated[list[str] | None, Query()]


def message(event: str, data: Mapping[str, Any], event_id: int | None = None) -> str:
    """One SSE message; ``data`` is JSON on one line (JSON escapes newlines)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def event_message(e: JobEvent) -> str:
    data = EventOut.from_event(e).model_dump(mode="json")
    return message(e.kind, {"seq": e.seq, "job_id": e.job_id, **data}, e.seq)


def _enums(kind: type[E], values: list[str] | None, name: str) -> frozenset[E]:
    try:
        return frozenset(kind(v.lower()) for v in split_values(values))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise errors.InvalidInput(
            f"{name}: each value must be one of {allowed}", field=name
        ) from None


def _start(after: int | None, last_event_id: str | None) -> int | None:
    """Where to resume: ``Last-Event-ID`` (an EventSource reconnecting) wins over ``after``."""
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        seq = int(last_event_id.strip())
    except ValueError:
        seq = -1
    if not 0 <= seq <= MAX_INT32:
        raise errors.InvalidInput("Last-Event-ID must be an event seq", field="Last-Event-ID")
    return seq


async def _heartbeats(poll: Callable[[], list[str] | None]) -> AsyncIterator[str]:
    """Run ``poll`` in a worker thread every :data:`POLL_S` (at once after a full batch)
    until it returns None, sending its messages, and a heartbeat comment when nothing was
    sent for :data:`HEARTBEAT_S`."""
    last_sent = time.monotonic()
    while True:
        started, pause = time.monotonic(), POLL_S
        try:
            batch = await run_in_threadpool(poll)
        except errors.StoreUnavailable as e:  # keep the stream; the database may come back
            log.warning("event stream: %s; polling again in %s s", e, STORE_RETRY_S)
            batch, pause = [], STORE_RETRY_S
        if batch is None:
            return
        for text in batch:
            yield text
        now = time.monotonic()
        if batch:
            last_sent = now
        elif now - last_sent >= HEARTBEAT_S:
            last_sent = now
            yield ": keep-alive\n\n"
        if len(batch) < MAX_BATCH:
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))


def _job_messages(follower: JobFollower) -> Callable[[], list[str] | None]:
    done = False

    def poll() -> list[str] | None:
        nonlocal done
        if done:
            return None
        step = follower.step()
        out = [
            message(LOG_KIND, {"job_id": follower.job_id, **asdict(item)})
            if isinstance(item, LogText)
            else event_message(item)
            for item in step.items
        ]
        if step.ended:
            done = True
            out.append(message("end", {"job_id": follower.job_id, "status": step.status}))
        return out

    return poll


@router.get("/v1/jobs/{job_id}/events/stream", summary="Stream a job's events and log (SSE)")
def job_event_stream(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    after: Annotated[Seq | None, Query(description="Only events after this seq")] = None,
    kind: Annotated[
        list[str] | None, Query(description="Only these kinds (`log` for the log output)")
    ] = None,
    log_offset: Annotated[ByteOffset, Query(description="Byte offset in the log")] = 0,
    last_event_id: Annotated[str | None, Header(description="Resume after this seq")] = None,
) -> StreamingResponse:
    """The job's events (from the start, or after ``Last-Event-ID``/``after``), then new
    ones as they happen, with its log output as ``log`` events; ``end`` when the job has
    ended, then the stream closes."""
    kinds = frozenset(split_values(kind)) or None
    follower = StreamService.of(services.jobs).follow_job(
        principal,
        job_id,
        after=_start(after, last_event_id) or 0,
        kinds=kinds - {LOG_KIND} if kinds is not None else None,
        logs=kinds is None or LOG_KIND in kinds,
        log_offset=log_offset,
    )
    body = _heartbeats(_job_messages(follower))
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)


@router.get("/v1/events/stream", summary="Stream the events of the tenant's jobs (SSE)")
def tenant_event_stream(
    services: ServicesDep,
    principal: PrincipalDep,
    job_id: Repeated = None,
    kind: Repeated = None,
    to_state: Annotated[
        list[str] | None, Query(description="Only state events moving to these states")
    ] = None,
    status: Annotated[
        list[str] | None, Query(description="Only events of jobs now in these states")
    ] = None,
    priority: Repeated = None,
    job_type: Repeated = None,
    after: Annotated[
        Seq | None, Query(description="Events after this seq (default: only new ones)")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this seq")] = None,
) -> StreamingResponse:
    """Events of all the caller's tenant's jobs, as they happen; it never ends."""
    service = StreamService.of(services.jobs)
    flt = EventFilter(
        job_ids=frozenset(split_values(job_id)),
        kinds=frozenset(split_values(kind)),
        to_states=_enums(JobState, to_state, "to_state"),
        job_states=_enums(JobState, status, "status"),
        priorities=_enums(Priority, priority, "priority"),
        job_types=frozenset(split_values(job_type)),
    )
    start = _start(after, last_event_id)
    cursor = start if start is not None else service.latest_seq(principal)

    def poll() -> list[str]:
        nonlocal cursor
        events = service.events_after(principal, cursor, flt=flt, limit=MAX_BATCH)
        if events:
            cursor = events[-1].seq
        return [event_message(e) for e in events]

    return StreamingResponse(_heartbeats(poll), media_type="text/event-stream", headers=HEADERS)
