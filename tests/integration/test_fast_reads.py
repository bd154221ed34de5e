"""The ASGI fast path of ``GET /v1/jobs/{id}`` and ``GET /v1/jobs`` answers the common
reads itself, byte for byte as the FastAPI routes behind it answer them (statuses,
headers, bodies, errors), and hands every other request to the routes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import httpx
import pytest

from jobyard.api.app import MAX_BODY_BYTES, App, create_app
from jobyard.api.fast_reads import FastReads
from jobyard.api.routes import jobs as job_routes
from jobyard.api.schemas.jobs import JobCreate
from jobyard.clock import ManualClock
from jobyard.domain.auth import Principal, Role, job_token
from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.store.claims import AttemptEnd, ClaimStore, Started
from jobyard.wiring import Services
from tests.conftest import ServicesFactory

SUPER = Principal(tenant_id="default", key_id="k", key_name="root", role=Role.SUPERUSER)
ASGI = Any
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Case = tuple[str, str | None, bool]  #: path, key (None: no Authorization), fast?


def _submit(services: Services, principal: Principal, **body: Any) -> Job:
    job, _ = services.jobs.submit_request(
        principal, JobCreate.model_validate({"entrypoint": "true", **body}).to_request(None)
    )
    return job


def _run(
    services: Services,
    principal: Principal,
    *,
    end: JobState | None,
    reports: list[dict[str, Any]] | None = None,
    **body: Any,
) -> Job:
    """A job claimed by a node and marked running (no process: no dispatcher runs), with
    what it reported, then ended as ``end`` says (None: left running)."""
    clock = services.clock
    assert isinstance(clock, ManualClock)
    job = _submit(services, principal, **body)
    claims = ClaimStore(services.db)
    claimed = claims.claim_next(node_id="test-node", now=clock.now(), lease_ttl_s=3600)
    assert claimed is not None and claimed.id == job.id
    clock.advance(0.25)
    started = Started(claimed, None, 0.0, "test-node", clock.now())
    [running] = claims.mark_running([started], clock.now())
    assert running is not None
    if reports:
        services.tracking.report(principal, job.id, reports)
    clock.advance(1.5)
    if end is not None:
        now_job = services.jobs.store.get(job.tenant_id, job.id)
        code = 0 if end is JobState.SUCCEEDED else 3
        claims.end_attempts([AttemptEnd(now_job, end, "ended", exit_code=code)], clock.now())
    return services.jobs.store.get(job.tenant_id, job.id)


def _world(services: Services) -> tuple[dict[str, str], dict[str, str]]:
    """(keys by name, job ids by name): two tenants, a project, jobs in every phase."""
    auth = services.auth
    services.tenancy.create_tenant(SUPER, "b", "B")
    project = services.tenancy.create_project(SUPER, "p1")["id"]
    keys = {
        "admin": auth.create_key(tenant_id="default", name="admin", role=Role.ADMIN)[1],
        "alice": auth.create_key(tenant_id="default", name="alice", role=Role.MEMBER)[1],
        "viewer": auth.create_key(tenant_id="default", name="viewer", role=Role.VIEWER)[1],
        "project": auth.create_key(
            tenant_id="default", name="scoped", role=Role.MEMBER, project_id=project
        )[1],
        "other": auth.create_key(tenant_id="b", name="other", role=Role.ADMIN)[1],
    }
    principal = {n: auth.authenticate(f"Bearer {k}") for n, k in keys.items()}
    alice, admin = principal["alice"], principal["admin"]
    warn: list[dict[str, Any]] = [
        {"type": "progress", "percent": 40, "stage": "load"},
        {"type": "metrics", "records_processed": 12, "total_records": 30},
        {"type": "warning", "category": "DataQuality", "message": "odd row"},
        {"type": "warning", "message": "slow disk"},
    ]
    jobs = {
        "succeeded": _run(
            services, alice, end=JobState.SUCCEEDED, reports=warn, name="ok", job_type="etl"
        ),
        "failed": _run(services, admin, end=JobState.FAILED, priority="high", job_type="etl"),
        "items": _run(services, alice, end=JobState.SUCCEEDED, inputs=[{"n": 1}, {"n": 2}]),
        "project": _run(services, principal["project"], end=JobState.SUCCEEDED, name="scoped"),
        "running": _run(services, alice, end=None, reports=warn, parameters={"x": 1}),
        "other": _submit(services, principal["other"], name="theirs"),
    }
    jobs["retry"] = services.jobs.retry(admin, jobs["failed"].id, reason="again")
    jobs["scheduled"] = _submit(
        services, alice, scheduled_at=(services.clock.now() + timedelta(days=1)).isoformat()
    )
    jobs["queued"] = _submit(services, alice, metadata={"team": "x"}, env={"A": "1"})
    services.clock.advance(3)  # type: ignore[attr-defined]
    return keys, {n: j.id for n, j in jobs.items()}


async def _call(app: ASGI, path: str, headers: dict[str, str]) -> Answer:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answer = await c.get(path, headers=headers)
    return answer.status_code, answer.headers.raw, answer.content


def _recording(app: App) -> tuple[ASGI, list[MutableMapping[str, Any]]]:
    """``app.framework`` (the FastAPI stack, without the fast paths), and the scopes of
    the requests that reached it (the router adds the endpoint it chose to them)."""
    scopes: list[MutableMapping[str, Any]] = []

    async def framework(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await app.framework(scope, receive, send)

    return framework, scopes


def _compare(
    services: Services, app: App, cases: list[Case]
) -> list[tuple[str, str | None, Answer]]:
    """Each (path, key, fast?) through the fast path and through the route: the same
    answers, and the route reached only where ``fast`` is False."""
    framework, routed = _recording(app)
    fast = FastReads(framework, services)
    answers = []
    for path, key, expect_fast in cases:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        by_route = asyncio.run(_call(app.framework, path, headers))  # reads the key too
        del routed[:]
        by_fast = asyncio.run(_call(fast, path, headers))
        assert by_fast == by_route, (path, key)
        assert len(routed) == (0 if expect_fast else 1), (path, key)
        answers.append((path, key, by_fast))
    return answers


World = tuple[Services, App, dict[str, str], dict[str, str]]


@pytest.fixture
def world(make_services: ServicesFactory) -> World:
    """(services, their app, keys by name, job ids by name), under a stopped clock."""
    services = make_services(start=False, clock=ManualClock())
    keys, ids = _world(services)
    return services, create_app(services), keys, ids


def test_the_fast_reads_answer_every_job_as_the_route_does(world: World) -> None:
    services, app, keys, ids = world
    cases: list[Case] = [(f"/v1/jobs/{i}", keys[k], True) for i in ids.values() for k in keys]
    cases += [(f"/v1/jobs/{i}", keys["admin"], True) for i in ("nope", "batch", "0" * 36)]
    cases += [
        (f"/v1/jobs/{ids['queued']}?insight=true", keys["admin"], False),  # a query string
        (f"/v1/jobs/{ids['queued']}", None, False),  # no key: 401
        (f"/v1/jobs/{ids['queued']}", "jy_nope", False),  # not a key: 401
        (f"/v1/jobs/{ids['running']}", job_token(ids["running"], "x" * 20), False),
    ]
    answers = _compare(services, app, cases)
    status = {(p, k): a[0] for p, k, a in answers}
    own = f"/v1/jobs/{ids['succeeded']}"
    assert status[own, keys["viewer"]] == status[own, keys["admin"]] == 200
    assert status[own, keys["other"]] == status[own, keys["project"]] == 404
    scoped = f"/v1/jobs/{ids['project']}"
    assert status[scoped, keys["project"]] == status[scoped, keys["alice"]] == 200
    assert status[f"/v1/jobs/{ids['other']}", keys["other"]] == 200
    assert status[f"/v1/jobs/{ids['queued']}", None] == 401
    kinds = {a[0] for _, _, a in answers}
    assert kinds == {200, 401, 404}
    # a read that declares a body over the limit: the app's 413, whichever path
    big = {"Authorization": f"Bearer {keys['admin']}", "Content-Length": str(2 * MAX_BODY_BYTES)}
    by_app, by_route = (asyncio.run(_call(a, own, big)) for a in (app, app.framework))
    assert by_app == by_route and by_app[0] == 413


def test_the_fast_reads_answer_every_list_as_the_route_does(world: World) -> None:
    services, app, keys, ids = world
    page = asyncio.run(_call(app.framework, "/v1/jobs?limit=2", {"Authorization": "Bearer x"}))
    assert page[0] == 401
    prefix = ids["succeeded"][:4]
    fast_queries = [
        "",
        "?limit=1",
        "?status=succeeded,failed&limit=1",
        "?status=SUCCEEDED&status=failed,%20queued",
        "?status=",
        "?status=nope",  # 422 from the route's handler, answered the same
        "?priority=high&priority=normal",
        "?priority=urgent",
        "?job_type=etl&submitted_by=alice",
        f"?id_prefix={prefix}",
        "?limit=2",
        "?limit=500",
        "?cursor=garbage",
    ]
    routed_queries = [
        "?limit=0",
        "?limit=501",
        "?limit=abc",
        "?limit=050",
        "?limit=",
        "?id_prefix=XYZ",
        "?cursor=" + "c" * 201,
        "?created_from=2020-01-01T00:00:00Z",
        "?created_to=yesterday",
        "?job_type=a&job_type=etl",
        "?job_type=",
        "?unknown=1",
    ]
    cases: list[Case] = [(f"/v1/jobs{q}", keys[k], True) for q in fast_queries for k in keys]
    cases += [(f"/v1/jobs{q}", keys["alice"], False) for q in routed_queries]
    cases += [("/v1/jobs", None, False), ("/v1/jobs?limit=1", "jy_nope", False)]
    answers = _compare(services, app, cases)
    # the next pages of every key, through their cursors
    pages: list[Case] = []
    for _, key, (code, _, body) in answers:
        cursor = re.search(rb'"next_cursor":"([^"]+)"', body)
        if code == 200 and cursor:
            pages.append((f"/v1/jobs?limit=2&cursor={cursor.group(1).decode()}", key, True))
    assert pages
    answers += _compare(services, app, pages)
    status = {(p, k): a[0] for p, k, a in answers}
    assert status["/v1/jobs?status=nope", keys["alice"]] == 422
    assert status["/v1/jobs?limit=0", keys["alice"]] == 422
    assert status["/v1/jobs?limit=050", keys["alice"]] == 200
    assert status["/v1/jobs", None] == 401
    totals = {
        k: re.search(rb'"summary":{"total":(\d+)', a[2]).group(1)  # type: ignore[union-attr]
        for p, k, a in answers
        if p == "/v1/jobs" and k is not None
    }
    assert totals == {
        keys["admin"]: b"8",
        keys["alice"]: b"8",
        keys["viewer"]: b"8",
        keys["project"]: b"1",
        keys["other"]: b"1",
    }


def test_a_rate_limited_or_forbidden_read_is_answered_as_the_route_answers_it(
    make_services: ServicesFactory,
) -> None:
    """The rate limit is taken once per request on either path; its 429 (and a job
    token's 403, once the fast path knows no key for it) have the route's shape."""
    services = make_services(start=False, rate_limit_per_s=0.001)  # a burst of 1
    keys = [
        services.auth.create_key(tenant_id="default", name=n, role=Role.MEMBER)[1]
        for n in ("a", "b")
    ]
    for key in keys:
        services.auth.authenticate(f"Bearer {key}")  # cached, as after a first request
    app = create_app(services)
    framework, routed = _recording(app)
    fast = FastReads(framework, services)

    def twice(asgi: ASGI, key: str) -> list[Answer]:
        h = {"Authorization": f"Bearer {key}"}
        return [asyncio.run(_call(asgi, "/v1/jobs?limit=1", h)) for _ in range(2)]

    by_fast, by_route = twice(fast, keys[0]), twice(app.framework, keys[1])
    assert routed == []
    assert [a[0] for a in by_fast] == [a[0] for a in by_route] == [200, 429]

    def shape(answer: Answer) -> Answer:  # the message says when to retry, to 10 ms
        headers = [(n, v) for n, v in answer[1] if n != b"content-length"]
        return answer[0], headers, re.sub(rb"\d+\.\d+ s", b"N s", answer[2])

    assert shape(by_fast[1]) == shape(by_route[1])
    assert dict(by_fast[1][1])[b"retry-after"] == b"1000"


def test_an_unexpected_error_gets_the_apps_500_answer(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    _, key = services.auth.create_key(tenant_id="default", name="r", role=Role.MEMBER)
    services.auth.authenticate(f"Bearer {key}")

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services.jobs, "list_jobs", broken)
    app = create_app(services)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/v1/jobs?limit=1", headers={"Authorization": f"Bearer {key}"})

    answer = asyncio.run(call())
    assert answer.status_code == 500 and answer.json()["code"] == "INTERNAL_ERROR"


def test_the_paths_the_fast_path_answers_are_the_two_routes(
    make_services: ServicesFactory,
) -> None:
    """No route registered before them (nor a new one) takes the paths the fast path
    answers: the endpoint FastAPI routes them to is one of the two read routes."""
    framework, scopes = _recording(create_app(make_services(start=False)))
    for path, endpoint in (
        ("/v1/jobs", job_routes.list_jobs),
        ("/v1/jobs/0f0e-id", job_routes.get_job),
        ("/v1/jobs/batch", job_routes.get_job),
    ):
        assert asyncio.run(_call(framework, path, {}))[0] == 401
        assert scopes.pop()["endpoint"] is endpoint, path
