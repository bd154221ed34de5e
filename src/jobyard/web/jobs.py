"""The jobs pages: the table (filters, cursor pages, counts, live rows) and one job's
page (timeline, live progress and log, attempts, results, cancel, retry)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from markupsafe import escape

from jobyard import errors
from jobyard.api.bounds import ByteOffset, Seq
from jobyard.clock import ensure_utc
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobFilter
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.service.stream import MAX_BATCH, LogText, StreamService
from jobyard.web.base import PREFIX, User, UserDep, WebRoute, WriterDep, page, see_other
from jobyard.web.forms import FieldErrors, parse_parameters
from jobyard.web.sse import fragment, render, stream

router = APIRouter(prefix=f"{PREFIX}/jobs", route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 50
LOG_TAIL_LINES = 2000
STATES = [s.value for s in JobState]
PRIORITIES = [p.value for p in Priority]
Many = Annotated[list[str] | None, Query()]


def _enums(kind: type[Any], values: list[str] | None, name: str) -> frozenset[Any]:
    out = set()
    for raw in values or []:
        for v in raw.split(","):
            if not v.strip():
                continue
            try:
                out.add(kind(v.strip().lower()))
            except ValueError:
                raise errors.InvalidInput(f"{name}: {v!r} is not a known value") from None
    return frozenset(out)


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise errors.InvalidInput(f"{name}: {value!r} is not a date or time") from None
    return ensure_utc(t)


def _model_ids(user: User, ref: str | None) -> frozenset[str]:
    """The versions a model filter means: every version of a model name, or one."""
    if not ref:
        return frozenset()
    registry = user.services.registry
    if ":" not in ref:
        try:
            found = frozenset(v.id for v in registry.list_versions(user.principal, ref))
            return found or frozenset({""})  # a model without versions: no jobs
        except errors.NotFound:
            pass
    return frozenset({registry.resolve(user.principal, ref).id})


def job_filter(user: User, q: dict[str, Any]) -> JobFilter:
    return JobFilter(
        states=_enums(JobState, q["status"], "status"),
        priorities=_enums(Priority, q["priority"], "priority"),
        job_type=q["job_type"] or None,
        submitted_by=q["submitted_by"] or None,
        created_from=_time(q["since"], "since"),
        created_to=_time(q["until"], "until"),
        model_version_ids=_model_ids(user, q["model"]),
        name_contains=q["q"] or None,
    )


def _query(
    status: list[str] | None,
    priority: list[str] | None,
    job_type: str | None,
    model: str | None,
    submitted_by: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
) -> dict[str, Any]:
    return {
        "status": [s for s in status or [] if s],
        "priority": [p for p in priority or [] if p],
        "job_type": job_type or "",
        "model": model or "",
        "submitted_by": submitted_by or "",
        "since": since or "",
        "until": until or "",
        "q": q or "",
    }


def _encode(q: dict[str, Any], **extra: str) -> str:
    pairs: list[tuple[str, str]] = []
    for k, v in {**q, **extra}.items():
        if isinstance(v, list):
            pairs += [(k, item) for item in v]
        elif v:
            pairs.append((k, v))
    return urlencode(pairs)


@router.get("")
def jobs_page(
    request: Request,
    user: UserDep,
    status: Many = None,
    priority: Many = None,
    job_type: str | None = None,
    model: str | None = None,
    submitted_by: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE,
) -> Response:
    query = _query(status, priority, job_type, model, submitted_by, since, until, q)
    if limit != PAGE_SIZE:
        query["limit"] = str(limit)
    flt = job_filter(user, query)
    found = user.services.jobs.list_jobs(user.principal, flt, limit=limit, cursor=cursor)
    filtered = any(v for k, v in query.items() if k != "limit")
    ids = ",".join(j.id for j in found.items)
    return page(
        request,
        "jobs.html",
        user,
        {
            "jobs": found.items,
            "counts": found.by_status,
            "total": sum(found.by_status.values()),
            "query": query,
            "filtered": filtered,
            "states": STATES,
            "priorities": PRIORITIES,
            "next_url": f"?{_encode(query, cursor=found.next_cursor)}"
            if found.next_cursor
            else None,
            "first_url": f"?{_encode(query)}" if cursor else None,
            "live_url": f"{PREFIX}/jobs/live?{_encode(query, ids=ids)}",
            "query_string": _encode(query),
        },
    )


@router.get("/live")
def jobs_live(
    user: UserDep,
    ids: str = "",
    status: Many = None,
    priority: Many = None,
    job_type: str | None = None,
    model: str | None = None,
    submitted_by: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
) -> StreamingResponse:
    """Rows of the page's jobs as they change (``job-<id>``), the counts by status
    (``counts``) and a notice when other jobs change (``notice``)."""
    query = _query(status, priority, job_type, model, submitted_by, since, until, q)
    flt = job_filter(user, query)
    shown = {i for i in ids.split(",") if i}
    service = StreamService.of(user.services.jobs)
    cursor = service.latest_seq(user.principal)
    jobs = user.services.jobs

    def poll() -> list[str]:
        nonlocal cursor
        events = service.events_after(user.principal, cursor, limit=MAX_BATCH)
        if not events:
            return []
        cursor = events[-1].seq
        touched = {e.job_id for e in events}
        now = user.services.clock.now()
        out = []
        for job_id in sorted(touched & shown):
            try:
                job = jobs.get(user.principal, job_id)
            except errors.NotFound:
                continue
            out.append(fragment(f"job-{job_id}", render("_row.html", j=job, now=now)))
        if any(e.kind == "state" for e in events):
            counts = jobs.list_jobs(user.principal, flt, limit=1).by_status
            html = render("_counts.html", counts=counts, total=sum(counts.values()), query=query)
            out.append(fragment("counts", html))
        if touched - shown:
            out.append(fragment("notice", render("_notice.html", query_string=_encode(query))))
        return out

    return stream(poll)


# ---- one job ------------------------------------------------------------------------


def _summary(user: User, job: Job) -> dict[str, Any]:
    reason, insight = user.services.insight.describe(job)
    return {
        "j": job,
        "reason": reason,
        "insight": insight,
        "user": user,
        "now": user.services.clock.now(),
    }


def _names(user: User, job: Job) -> dict[str, str]:
    """Names of the job's environment and folders (their ids when gone)."""
    spec, out = job.spec, {}
    lookups: dict[str, tuple[str | None, Callable[[Principal, str], Any]]] = {
        "environment": (spec.environment_id, user.services.registry.get_environment),
        "input_folder": (spec.input_folder_id, user.services.folders.get),
        "output_folder": (spec.output_folder_id, user.services.folders.get),
    }
    for what, (ref, get) in lookups.items():
        if ref:
            try:
                out[what] = str(get(user.principal, ref).name)
            except errors.NotFound:
                out[what] = f"{ref} (deleted)"
    if spec.model_version_id:
        try:
            out["model"] = user.services.registry.resolve(user.principal, spec.model_version_id).ref
        except errors.NotFound:
            out["model"] = f"{spec.model_version_id} (deleted)"
    return out


@router.get("/{job_id}")
def job_page(request: Request, user: UserDep, job_id: str) -> Response:
    jobs = user.services.jobs
    job = jobs.get(user.principal, job_id)
    events = jobs.events(user.principal, job_id)
    chunk = user.services.logs.read_log(user.principal, job_id, tail=LOG_TAIL_LINES)
    results = user.services.results.get(user.principal, job_id)
    samples = user.services.tracking.samples(user.principal, job_id)
    chart = {
        "at": [s["at"].timestamp() for s in samples],
        "cpu": [s["cpu_percent"] for s in samples],
        "rss": [s["rss_bytes"] for s in samples],
    }
    last_seq = events[-1].seq if events else 0
    return page(
        request,
        "job.html",
        user,
        {
            **_summary(user, job),
            "events": events,
            "log": chunk.data.decode("utf-8", errors="replace"),
            "log_truncated": chunk.offset > 0,
            "live_url": f"{PREFIX}/jobs/{job_id}/live?"
            + urlencode({"after": last_seq, "log_offset": chunk.next_offset}),
            "warnings": user.services.tracking.warnings_of(job),
            "attempts": user.services.tracking.attempts(user.principal, job_id),
            "retries": jobs.retries(user.principal, job_id),
            "results": results.artifacts,
            "chart": json.dumps(chart),
            "has_samples": bool(samples),
            "names": _names(user, job),
        },
    )


@router.get("/{job_id}/live")
def job_live(
    user: UserDep, job_id: str, after: Seq = 0, log_offset: ByteOffset = 0
) -> StreamingResponse:
    """The job's new log text (``log``), timeline lines (``event``), its summary when it
    changed (``summary``) and ``end`` once it has ended."""
    follower = StreamService.of(user.services.jobs).follow_job(
        user.principal, job_id, after=after, log_offset=log_offset
    )
    done = False

    def poll() -> list[str] | None:
        nonlocal done
        if done:
            return None
        step = follower.step()
        out = []
        changed = False
        for item in step.items:
            if isinstance(item, LogText):
                out.append(fragment("log", str(escape(item.text))))
            else:
                changed = True
                out.append(fragment("event", render("_event.html", e=item)))
        if changed or step.ended:
            try:
                job = user.services.jobs.get(user.principal, job_id)
                out.append(fragment("summary", render("_summary.html", **_summary(user, job))))
            except errors.NotFound:
                pass
        if step.ended:
            done = True
            out.append(fragment("end", ""))
        return out

    return stream(poll)


@router.get("/{job_id}/log")
def job_log(user: UserDep, job_id: str, attempt: int | None = None) -> StreamingResponse:
    """The whole log of an attempt (the latest by default), as a download."""
    jobs = user.services.jobs
    jobs.get(user.principal, job_id)

    def chunks() -> Iterator[bytes]:
        offset = 0
        while True:
            piece = user.services.logs.read_log(
                user.principal, job_id, offset=offset, attempt=attempt
            )
            if not piece.data:
                return
            yield piece.data
            offset = piece.next_offset

    name = f"{job_id}-attempt-{attempt}.log" if attempt else f"{job_id}.log"
    return StreamingResponse(
        chunks(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/{job_id}/results/{path:path}")
def job_result(user: UserDep, job_id: str, path: str) -> StreamingResponse:
    artifact, chunks = user.services.results.open(user.principal, job_id, path)
    filename = artifact.path.rsplit("/", 1)[-1].replace('"', "")
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{job_id}/cancel")
def cancel_confirm(request: Request, user: UserDep, job_id: str) -> Response:
    job = user.services.jobs.get(user.principal, job_id)
    return page(request, "cancel.html", user, {"j": job})


@router.post("/{job_id}/cancel")
async def cancel(request: Request, user: WriterDep, job_id: str) -> Response:
    form = await request.form()
    force = form.get("force") == "1"
    reason = str(form.get("reason") or "") or None
    await _threaded(user.services.jobs.cancel, user.principal, job_id, force=force, reason=reason)
    return see_other(f"{PREFIX}/jobs/{job_id}")


async def _threaded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


def _retry_fields(job: Job) -> list[dict[str, str]]:
    return [
        {
            "name": k,
            "value": v if isinstance(v, str) else json.dumps(v),
            "kind": "string" if isinstance(v, str) else "json",
        }
        for k, v in sorted(job.spec.parameters.items())
    ]


@router.get("/{job_id}/retry")
def retry_form(request: Request, user: UserDep, job_id: str) -> Response:
    job = user.services.jobs.get(user.principal, job_id)
    return page(
        request,
        "retry.html",
        user,
        {"j": job, "fields": _retry_fields(job), "errors": {}, "priorities": PRIORITIES},
    )


@router.post("/{job_id}/retry")
async def retry(request: Request, user: WriterDep, job_id: str) -> Response:
    form = await request.form()
    jobs = user.services.jobs
    job = await _threaded(jobs.get, user.principal, job_id)
    problems = FieldErrors()
    parameters = parse_parameters(form, problems)
    timeout = str(form.get("timeout_s") or "").strip()
    timeout_s: float | None = None
    if timeout:
        try:
            timeout_s = float(timeout)
        except ValueError:
            problems.add("timeout_s", "timeout: a number of seconds")
    priority = str(form.get("priority") or "") or None
    if not problems:
        try:
            new = await _threaded(
                jobs.retry,
                user.principal,
                job_id,
                reason=str(form.get("reason") or "") or None,
                parameters=parameters,
                priority=Priority(priority) if priority in PRIORITIES else None,
                timeout_s=timeout_s,
            )
            return see_other(f"{PREFIX}/jobs/{new.id}")
        except errors.InvalidInput as e:
            problems.add(str(e.details.get("field") or "form"), e.message)
    fields = [
        {**f, "value": str(form.get(f"param.{f['name']}", f["value"]))} for f in _retry_fields(job)
    ]
    return page(
        request,
        "retry.html",
        user,
        {"j": job, "fields": fields, "errors": problems.by_field, "priorities": PRIORITIES},
        status_code=422,
    )
