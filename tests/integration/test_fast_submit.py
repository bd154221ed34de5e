"""The ASGI fast path answers plain submits itself and hands everything else, with its
body, to the app behind it (which the acceptance tests compare it with)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from jobyard.api.app import MAX_BODY_BYTES, create_app
from jobyard.api.fast_submit import FastSubmit
from jobyard.clock import ManualClock
from jobyard.domain.auth import Role
from jobyard.domain.jobs import JobFilter
from jobyard.service.auth import KEY_CACHE
from tests.conftest import ServicesFactory

BODY = {"entrypoint": "true", "scheduled_at": "2099-01-01T00:00:00Z", "name": "fast"}


def test_plain_submits_never_reach_the_app_and_the_rest_always_does(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False)
    _, key = services.auth.create_key(tenant_id="default", name="fast", role=Role.MEMBER)
    seen: list[tuple[str, bytes]] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = FastSubmit(app, services, MAX_BODY_BYTES)
    headers = {"Authorization": f"Bearer {key}"}

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = await c.post("/v1/jobs", json=BODY, headers=headers)
            cached = await c.post("/v1/jobs", json=BODY, headers=headers)
            keyed = await c.post("/v1/jobs", json=BODY, headers={**headers, "Idempotency-Key": "k"})
            invalid = await c.post("/v1/jobs", json={"entrypoint": " "}, headers=headers)
            model = await c.post("/v1/jobs", json={"model": "m:1"}, headers=headers)
            other = await c.get("/v1/jobs", headers=headers)
            return [first, cached, keyed, invalid, model, other]

    # what the route does on a first request: the key and the tenant's quotas are cached
    services.auth.authenticate(f"Bearer {key}")
    services.jobs.quotas.check_queued("default")
    first, cached, keyed, invalid, model, other = asyncio.run(calls())
    assert first.status_code == cached.status_code == 201
    assert cached.json()["name"] == "fast" and cached.json()["submitted_by"] == "fast"
    assert services.jobs.store.get("default", cached.json()["id"]).spec.name == "fast"
    assert (keyed.status_code, invalid.status_code, model.status_code, other.status_code) == (
        299,
        299,
        299,
        299,
    )
    assert [path for path, _ in seen] == ["/v1/jobs"] * 4  # the four it did not answer
    bodies = [json.loads(body) if body else None for _, body in seen]
    assert bodies == [BODY, {"entrypoint": " "}, {"model": "m:1"}, None]  # bodies intact


def test_an_unexpected_error_gets_the_apps_500_answer(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In front of FastAPI's stack, a bug in the fast path still answers the app's JSON
    500 (and reaches the server, which logs it), not a bare connection reset."""
    services = make_services(start=False)
    _, key = services.auth.create_key(tenant_id="default", name="fast", role=Role.MEMBER)
    services.auth.authenticate(f"Bearer {key}")
    services.jobs.quotas.check_queued("default")

    async def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services.jobs, "submit_plain", broken)
    app = create_app(services)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {key}"})

    answer = asyncio.run(call())
    assert answer.status_code == 500 and answer.json()["code"] == "INTERNAL_ERROR"


def test_a_key_due_to_be_read_again_is_read_on_the_fast_path(
    make_services: ServicesFactory,
) -> None:
    """Every few seconds the cached key and the tenant's quotas are due to be read again:
    the fast path reads them (in the thread pool) instead of handing the submit to the
    route, and a key revoked meanwhile by another replica is refused by the route."""
    clock = ManualClock()
    services = make_services(start=False, clock=clock)
    key_row, key = services.auth.create_key(tenant_id="default", name="fast", role=Role.MEMBER)
    services.auth.authenticate(f"Bearer {key}")
    services.jobs.quotas.check_queued("default")
    routed: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = FastSubmit(app, services, MAX_BODY_BYTES)

    async def submit() -> int:
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            answer = await c.post("/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

    assert asyncio.run(submit()) == 201
    clock.advance(KEY_CACHE.total_seconds() + 1)  # the key's entry is due
    services.jobs.quotas._cache.clear()  # and so are the tenant's quotas
    assert asyncio.run(submit()) == 201
    assert routed == []
    services.auth.store.revoke_key("default", key_row.id, clock.now())  # another replica
    clock.advance(KEY_CACHE.total_seconds() + 1)
    assert asyncio.run(submit()) == 299  # the route answers (its 401)
    assert routed == ["/v1/jobs"]
    assert sum(services.jobs.store.count_by_state("default", JobFilter()).values()) == 2
