"""Ray Jobs API (``ray job …`` and ``JobSubmissionClient``, Ray 2.60) at ``/api``: jobs,
logs (also over a WebSocket), stop, delete and the package store used by ``working_dir``
and ``py_modules``. Only translation happens here; see ``docs/reference/compat-ray.md``."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, ParamSpec

import anyio
import anyio.from_thread
from fastapi import APIRouter, Body, Depends, Header, Request, Response, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.websockets import WebSocketDisconnect

from jobyard import errors
from jobyard.api.compat.ray_mapping import (
    BadRequest,
    duplicate_message,
    http_status,
    job_details,
    not_ended_message,
    parse_submit,
    version_info,
)
from jobyard.api.deps import ServicesDep, check_user
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.service.submission import JobRequest
from jobyard.wiring import Services

TAIL_POLL_S = 0.1
#: a text frame stays far below aiohttp's default 4 MiB message limit
FRAME_CHARS = 16_384
LIST_PAGE = 500
P = ParamSpec("P")

router = APIRouter(tags=["compat: Ray Jobs API"])


def _text(exc: errors.JobyardError) -> Response:
    """An error as Ray's server answers: plain text with the status."""
    code = http_status(exc)
    headers = {"Retry-After": "1"} if code == 503 else None
    return PlainTextResponse(exc.message, status_code=code, headers=headers)


def ray_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    """Answer the route's jobyard errors as plain text (auth errors stay JSON 401/403)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except errors.JobyardError as e:
            return _text(e)

    return wrapper


def _authenticate(runtime: Services, header: str | None, method: str = "GET") -> Principal:
    """401 without a credential, 403 with one that is refused (Ray's client words them
    "Authentication required" and "Authentication failed")."""
    try:
        return check_user(runtime.auth.authenticate(header), method)
    except errors.Unauthenticated as e:
        if header:
            raise errors.Forbidden(e.message) from None
        raise


def ray_principal(
    request: Request,
    runtime: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_ray_authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """``Authorization: Bearer <api key>``, or ``X-Ray-Authorization`` (behind proxies)."""
    principal = _authenticate(runtime, authorization or x_ray_authorization, request.method)
    runtime.rate_limiter.check(principal.key_id)
    return principal


RayPrincipal = Annotated[Principal, Depends(ray_principal)]


def _find(runtime: Services, principal: Principal, ref: str) -> Job:
    """A job by Ray submission id, else by jobyard id; Ray's 404 text otherwise."""
    job = runtime.jobs.find_by_submission_id(principal, ref)
    if job is not None:
        return job
    try:
        return runtime.jobs.get(principal, ref)
    except errors.NotFound:
        raise errors.NotFound(f"Job {ref} does not exist") from None


# ---- version and jobs ----------------------------------------------------------------
@router.get("/api/version", summary="Ray Jobs API version (authenticated, like Ray's)")
def version(_principal: RayPrincipal) -> dict[str, str]:
    return version_info()


@router.post("/api/jobs/", summary="Submit a job (JobSubmitRequest)")
@router.post("/api/jobs", include_in_schema=False)
@ray_errors
def submit_job(
    body: Annotated[Any, Body()], runtime: ServicesDep, principal: RayPrincipal
) -> Response:
    try:
        sub = parse_submit(body)
    except BadRequest as e:
        return PlainTextResponse(str(e), status_code=400)
    missing = runtime.packages.missing(principal, sub.package_uris)
    if missing:
        return PlainTextResponse(
            f"runtime_env package(s) {', '.join(missing)} were not uploaded to this server",
            status_code=400,
        )
    try:
        _job, created = runtime.jobs.submit_request(principal, JobRequest(spec=sub.spec))
    except errors.IdempotencyConflict:
        created = False
    if not created:  # jobyard would answer the existing job; Ray refuses the id
        return PlainTextResponse(duplicate_message(sub.submission_id), status_code=500)
    return JSONResponse({"job_id": sub.submission_id, "submission_id": sub.submission_id})


@router.get("/api/jobs/", summary="All jobs of the caller's tenant (JobDetails list)")
@router.get("/api/jobs", include_in_schema=False)
@ray_errors
def list_jobs(runtime: ServicesDep, principal: RayPrincipal) -> Response:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = runtime.jobs.list_jobs(principal, JobFilter(), limit=LIST_PAGE, cursor=cursor)
        out.extend(job_details(j) for j in page.items)
        if page.next_cursor is None:
            return JSONResponse(out)
        cursor = page.next_cursor


@router.get("/api/jobs/{job_id}", summary="A job (JobDetails), by submission id or job id")
@ray_errors
def get_job(job_id: str, runtime: ServicesDep, principal: RayPrincipal) -> Response:
    return JSONResponse(job_details(_find(runtime, principal, job_id)))


@router.get("/api/jobs/{job_id}/logs", summary="The job's whole log")
@ray_errors
def job_logs(job_id: str, runtime: ServicesDep, principal: RayPrincipal) -> Response:
    job = _find(runtime, principal, job_id)
    parts: list[bytes] = []
    offset = 0
    while chunk := runtime.logs.read_log(principal, job.id, offset=offset).data:
        parts.append(chunk)
        offset += len(chunk)
    return JSONResponse({"logs": b"".join(parts).decode("utf-8", errors="replace")})


@router.post("/api/jobs/{job_id}/stop", summary="Stop a job (asynchronously)")
@ray_errors
def stop_job(job_id: str, runtime: ServicesDep, principal: RayPrincipal) -> Response:
    job = _find(runtime, principal, job_id)
    if job.is_terminal:
        return JSONResponse({"stopped": False})
    try:
        runtime.jobs.cancel(principal, job.id, reason="ray job stop")
    except errors.InvalidTransition:  # it ended meanwhile
        return JSONResponse({"stopped": False})
    return JSONResponse({"stopped": True})


@router.delete("/api/jobs/{job_id}", summary="Delete an ended job with its logs")
@ray_errors
def delete_job(job_id: str, runtime: ServicesDep, principal: RayPrincipal) -> Response:
    job = _find(runtime, principal, job_id)
    try:
        runtime.jobs.delete(principal, job.id)
    except errors.Conflict:  # Ray answers 500 for a job that has not ended
        return PlainTextResponse(not_ended_message(job_id, job.state), status_code=500)
    return JSONResponse({"deleted": True})


# ---- log tail ------------------------------------------------------------------------
async def _refuse(ws: WebSocket, exc: errors.JobyardError) -> None:
    """Refuse before the upgrade: a plain HTTP answer where the server allows it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(_text(exc))
    else:
        await ws.close(code=1008, reason=exc.message[:120])


async def _log_frames(runtime: Services, principal: Principal, job_id: str) -> AsyncIterator[str]:
    """The log from its start as text, until the job has ended and all was read."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset, attempt = 0, None
    while True:
        poll = await run_in_threadpool(
            runtime.logs.poll_log, principal, job_id, offset=offset, attempt=attempt
        )
        attempt = poll.attempt
        if poll.data:
            offset = poll.next_offset
            text = decoder.decode(poll.data)
            for i in range(0, len(text), FRAME_CHARS):
                yield text[i : i + FRAME_CHARS]
        elif poll.done:
            rest = decoder.decode(b"", final=True)
            if rest:
                yield rest
            return
        else:
            await asyncio.sleep(TAIL_POLL_S)


@router.websocket("/api/jobs/{job_id}/logs/tail")
async def tail_logs(ws: WebSocket, job_id: str) -> None:
    """Text frames of the log; closes with 1000 once the job has ended and all was sent."""
    runtime: Services = ws.app.state.services
    header = ws.headers.get("authorization") or ws.headers.get("x-ray-authorization")
    try:
        principal = await run_in_threadpool(_authenticate, runtime, header)
        job = await run_in_threadpool(_find, runtime, principal, job_id)
    except errors.JobyardError as e:
        await _refuse(ws, e)
        return
    await ws.accept()
    async with anyio.create_task_group() as tg:

        async def watch_disconnect() -> None:
            try:
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            except (WebSocketDisconnect, RuntimeError):
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch_disconnect)
        code = 1000
        try:
            async for frame in _log_frames(runtime, principal, job.id):
                await ws.send_text(frame)
        except errors.NotFound:
            pass  # deleted meanwhile: nothing more to send
        except errors.JobyardError:
            code = 1011  # e.g. the database is unavailable; the client stops tailing
        except (WebSocketDisconnect, RuntimeError):
            code = 0  # the client went away
        if code:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await ws.close(code=code)
        tg.cancel_scope.cancel()


# ---- packages ------------------------------------------------------------------------
@router.get("/api/packages/{protocol}/{package_name}", summary="200 if the package exists")
@ray_errors
def package_exists(
    protocol: str, package_name: str, runtime: ServicesDep, principal: RayPrincipal
) -> Response:
    if runtime.packages.exists(principal, protocol, package_name):
        return Response(status_code=200)
    return PlainTextResponse(f"Package {protocol}://{package_name} does not exist", 404)


def _blocking(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body for a worker thread, awaited chunk by chunk (nothing buffered)."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


@router.put("/api/packages/{protocol}/{package_name}", summary="Upload a package (raw body)")
async def upload_package(
    protocol: str,
    package_name: str,
    request: Request,
    runtime: ServicesDep,
    principal: RayPrincipal,
) -> Response:
    put = runtime.packages.put
    try:
        await run_in_threadpool(put, principal, protocol, package_name, _blocking(request.stream()))
    except errors.JobyardError as e:
        return _text(e)
    return Response(status_code=200)
