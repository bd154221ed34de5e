"""``Client``: a synchronous client of the jobyard ``/v1`` API (see ``docs/reference/api.md``)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from jobyard.sdk.admin import AdminMixin
from jobyard.sdk.config import locate_server
from jobyard.sdk.definitions import DefinitionsMixin
from jobyard.sdk.errors import APIError
from jobyard.sdk.folders import FoldersMixin
from jobyard.sdk.models import Job, JobBatch, JobEvent, JobPage, LogChunk, SystemStatus
from jobyard.sdk.registry import RegistryMixin
from jobyard.sdk.results import ResultsMixin
from jobyard.sdk.stream import STREAM_READ_TIMEOUT_S, EventStream, OnEvent, StreamEvent

M = TypeVar("M", bound=BaseModel)

_MAX_POLL_INTERVAL_S = 2.0


def _iso(value: datetime | str) -> str:
    """An ISO 8601 UTC time; a naive datetime is taken as local time."""
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(str(job_id), safe='')}{suffix}"


class Client(FoldersMixin, RegistryMixin, ResultsMixin, DefinitionsMixin, AdminMixin):
    """Talks to a jobyard server.

    Without ``url``/``token`` it finds them like the CLI: ``JOBYARD_URL`` /
    ``JOBYARD_API_KEY``, then ``credentials.json`` in ``$JOBYARD_HOME``, or else in
    ``./.jobyard`` and ``~/.config/jobyard`` (see :mod:`jobyard.sdk.config`); a 401
    says where it looked.
    Errors are :class:`jobyard.sdk.errors.APIError` subclasses.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = locate_server(url, token)
        self.url, token = self.server.url, self.server.api_key
        self._auth_hint = self.server.missing_key_message()
        self._url_hint = self.server.url_hint
        self._init_transports(token, timeout, transport)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # -- jobs -------------------------------------------------------------------

    def submit(
        self,
        entrypoint: str | Sequence[str] | None = None,
        *,
        model: str | None = None,
        environment: str | None = None,
        input_folder: str | None = None,
        output_folder: str | None = None,
        role_bindings: Sequence[Mapping[str, Any]] | None = None,
        continue_on_error: bool = False,
        inputs: Sequence[Any] | None = None,
        inputs_from_folder: bool = False,
        max_attempts: int | None = None,
        retry_on: Sequence[str] | None = None,
        retry_backoff_s: float | None = None,
        notifications: Mapping[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        job_type: str | None = None,
        priority: str = "normal",
        parameters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        scheduled_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job. A ``str`` entrypoint runs through ``/bin/sh -c``; a sequence is
        an argv run without a shell; or give a ``model`` (``name:version``) instead, with
        an ``environment``, folders and ``role_bindings`` (``{"role", "folder" | "value"}``).
        With ``idempotency_key`` a repeated submission returns the existing job."""
        body: dict[str, Any] = {"priority": priority}
        if entrypoint is not None:
            body["entrypoint"] = entrypoint if isinstance(entrypoint, str) else list(entrypoint)
        if continue_on_error:
            body["continue_on_error"] = True
        if role_bindings:
            body["role_bindings"] = [dict(b) for b in role_bindings]
        optional: dict[str, Any] = {
            "name": name,
            "description": description,
            "job_type": job_type,
            "parameters": dict(parameters) if parameters is not None else None,
            "metadata": dict(metadata) if metadata is not None else None,
            "env": dict(env) if env is not None else None,
            "timeout_s": timeout_s,
            "scheduled_at": _iso(scheduled_at) if scheduled_at is not None else None,
            "model": model,
            "environment": environment,
            "input_folder": input_folder,
            "output_folder": output_folder,
            "inputs": list(inputs) if inputs is not None else None,
            "inputs_from_folder": inputs_from_folder or None,
            "max_attempts": max_attempts,
            "retry_on": list(retry_on) if retry_on is not None else None,
            "retry_backoff_s": retry_backoff_s,
            "notifications": dict(notifications) if notifications is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call(Job, "POST", "/v1/jobs", json=body, headers=headers)

    def submit_batch(self, jobs: Sequence[Mapping[str, Any]]) -> JobBatch:
        """Submit up to 1,000 jobs in one request and one transaction. Each job is the
        JSON body of ``POST /v1/jobs`` (``{"entrypoint": [...], "priority": ...}``; its
        ``submission_id`` makes it idempotent); each gets its own result or error."""
        return self._call(
            JobBatch, "POST", "/v1/jobs/batch", json={"jobs": [dict(j) for j in jobs]}
        )

    def get(self, job_id: str) -> Job:
        """The job with this id (:class:`NotFound` if there is none)."""
        return self._call(Job, "GET", _path(job_id))

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        priority: str | None = None,
        job_type: str | None = None,
        submitted_by: str | None = None,
        created_from: datetime | str | None = None,
        created_to: datetime | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        id_prefix: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next.
        ``id_prefix`` keeps the jobs whose id starts with it."""
        params: builtins.list[tuple[str, str | int]] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else status
            params.extend(("status", s) for s in statuses)
        for key, value in (
            ("priority", priority),
            ("job_type", job_type),
            ("submitted_by", submitted_by),
            ("cursor", cursor),
            ("id_prefix", id_prefix),
        ):
            if value is not None:
                params.append((key, value))
        if created_from is not None:
            params.append(("created_from", _iso(created_from)))
        if created_to is not None:
            params.append(("created_to", _iso(created_to)))
        params.append(("limit", limit))
        return self._call(JobPage, "GET", "/v1/jobs", params=params)

    def iter_jobs(self, **filters: Any) -> Iterator[Job]:
        """Every job matching the filters of :meth:`list`, following the cursors."""
        cursor: str | None = filters.pop("cursor", None)
        while True:
            page = self.list(cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.2,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job has ended and return it.

        The interval starts at ``poll_interval`` and grows up to 2 s. ``on_update`` is
        called with every polled job. Raises :class:`TimeoutError` after ``timeout`` s.
        (The one poll loop of the SDK: :meth:`watch` falls back to it.)
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job.is_terminal:
                return job
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
            time.sleep(interval if deadline is None else min(interval, deadline - now))
            interval = min(interval * 1.5, max(poll_interval, _MAX_POLL_INTERVAL_S))

    def stream_events(
        self,
        job_id: str | None = None,
        *,
        after: int | None = None,
        kinds: Sequence[str] | None = None,
    ) -> EventStream:
        """Events as they happen (``docs/reference/events.md``). With ``job_id``: the job's events
        from the start (or after the seq ``after``) and its log output (kind ``log``),
        ending after the ``end`` event. Without: the events of all the tenant's jobs from
        now on (or after ``after``), never ending. ``kinds`` keeps only these kinds
        (``"log"`` included). Connects at once (errors such as :class:`NotFound` are
        raised here); close the stream (or use ``with``) to disconnect."""
        path = _path(job_id, "/events/stream") if job_id is not None else "/v1/events/stream"
        params: dict[str, Any] = {"kind": builtins.list(kinds or ())}
        if after is not None:
            params["after"] = after
        resp = self._send_streaming(
            "GET",
            path,
            params=params,
            headers={"Accept": "text/event-stream"},
            timeout=httpx.Timeout(self._timeout, read=max(self._timeout, STREAM_READ_TIMEOUT_S)),
        )
        return EventStream(resp, ends=job_id is not None, connection_error=self._connection_error)

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
        with :meth:`wait` instead, passing status changes on as ``state`` events."""
        status: str | None = None
        try:
            events = self.stream_events(job_id, kinds=kinds)
        except APIError:  # no stream here (an older server, a fake): poll instead
            events = None
        if events is not None:
            with events:
                while True:
                    try:
                        event = next(events)
                    except (StopIteration, APIError):  # ended early, or broke: poll instead
                        break
                    status = event.to_state or status
                    if on_event is not None:
                        on_event(event)
                    if event.kind == "end":
                        return self.get(job_id)
        if on_event is None:
            return self.wait(job_id, poll_interval=poll_interval)

        def state_changes(job: Job) -> None:
            nonlocal status
            if job.status != status:
                data = {"job_id": job.id, "from_state": status, "to_state": job.status}
                on_event(StreamEvent("state", {**data, "message": job.message}))
            status = job.status

        return self.wait(job_id, poll_interval=poll_interval, on_update=state_changes)

    def cancel(self, job_id: str, *, force: bool = False, reason: str | None = None) -> Job:
        """Ask the server to cancel the job; returns it (``cancelling`` or ``cancelled``)."""
        body: dict[str, Any] = {"force": force}
        if reason is not None:
            body["reason"] = reason
        return self._call(Job, "POST", _path(job_id, "/cancel"), json=body)

    def retry(
        self,
        job_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        priority: str | None = None,
        reason: str | None = None,
        timeout_s: float | None = None,
        immediate: bool = False,
    ) -> Job:
        """Run an ended job again as a new job (its ``retry_of`` is ``job_id``).

        ``parameters`` are merged over the old job's on the server (a key cannot be
        removed); ``priority`` and ``timeout_s`` replace the old ones; ``immediate`` puts
        the new job at the front of the queue. :class:`Conflict` while the job has not
        ended, :class:`NotFound` without such a job."""
        body: dict[str, Any] = {}
        if parameters:
            body["parameters"] = dict(parameters)
        optional = {"priority": priority, "reason": reason, "timeout_s": timeout_s}
        body.update({k: v for k, v in optional.items() if v is not None})
        if immediate:
            body["immediate"] = True
        return self._call(Job, "POST", _path(job_id, "/retry"), json=body)

    def read_logs(
        self, job_id: str, *, offset: int = 0, tail: int | None = None, attempt: int | None = None
    ) -> LogChunk:
        """Part of the log with its byte offsets (``next_offset`` is where to continue)."""
        params: dict[str, int] = {}
        if tail is not None:
            params["tail"] = tail
        if offset or tail is None:
            params["offset"] = offset
        if attempt is not None:
            params["attempt"] = attempt
        resp = self._request("GET", _path(job_id, "/logs"), params=params)
        start = _int_header(resp, "X-Log-Offset", offset)
        end = _int_header(resp, "X-Log-Next-Offset", start + len(resp.content))
        return LogChunk(text=resp.text, offset=start, next_offset=end)

    def logs(self, job_id: str, *, offset: int = 0, tail: int | None = None) -> str:
        """The job's stdout and stderr from byte ``offset``, or its last ``tail`` lines."""
        return self.read_logs(job_id, offset=offset, tail=tail).text

    def follow_logs(self, job_id: str, *, offset: int = 0) -> Iterator[str]:
        """Stream the log from byte ``offset`` until the job has ended and it is drained."""
        params: dict[str, str | int] = {"follow": "true", "offset": offset}
        timeout = httpx.Timeout(self._timeout, read=None)
        with self._stream("GET", _path(job_id, "/logs"), params=params, timeout=timeout) as resp:
            yield from resp.iter_text()

    def events(self, job_id: str, *, after: int | None = None) -> builtins.list[JobEvent]:
        """The job's timeline, oldest first; with ``after`` only events with a larger seq."""
        params = {"after": after} if after is not None else None
        resp = self._request("GET", _path(job_id, "/events"), params=params)
        try:
            items = resp.json()["items"]
            return [JobEvent.model_validate(item) for item in items]
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise APIError(
                f"the server at {self.url} sent an unexpected answer: {exc}",
                status_code=resp.status_code,
                code="BAD_RESPONSE",
            ) from exc

    # -- misc -------------------------------------------------------------------

    def system_status(self) -> SystemStatus:
        """Health, nodes, the queue by priority, throughput, resources and the answering
        node's sandbox (``GET /v1/system/status``; job figures are your tenant's)."""
        return self._call(SystemStatus, "GET", "/v1/system/status")

    def health(self) -> bool:
        """Whether the server answers ``GET /healthz`` with 200."""
        try:
            if self._fast is not None:
                resp = self._fast.request("GET", f"{self._prefix}/healthz", self._fast_headers)
                return resp.status_code == 200
            return self._http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        """Close the connections."""
        self._close_transports()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _int_header(resp: httpx.Response, name: str, default: int) -> int:
    try:
        return int(resp.headers[name])
    except (KeyError, ValueError):
        return default
