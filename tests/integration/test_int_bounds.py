"""Integers beyond what the database stores, in query parameters and JSON bodies, over
real HTTP on both databases: a 422 naming the field, never a 500 (an OverflowError
from the SQLite driver, an out-of-range error from PostgreSQL's INTEGER)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from jobyard.api.bounds import MAX_INT32, MAX_INT64
from jobyard.domain.auth import hash_secret, job_token, new_token_secret
from jobyard.store.claims import ClaimRequest
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

HUGE = 19579106200177952686080  # the value schemathesis found
Serve = Callable[[Services], LiveServer]


@pytest.fixture
def live_idle(make_services: ServicesFactory, serve: Serve) -> LiveServer:
    return serve(make_services(start=False))


def _call(
    live: LiveServer, method: str, path: str, body: Any = None, token: str | None = None
) -> httpx.Response:
    return httpx.request(
        method,
        f"{live.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token or live.admin_key}"},
        timeout=30,
    )


def _refused(r: httpx.Response, field: str, code: str = "VALIDATION_ERROR") -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    error = r.json()
    assert error["code"] == code, error
    assert field in error["message"], error


def test_out_of_range_query_parameters_are_422(live_idle: LiveServer) -> None:
    job = _call(live_idle, "POST", "/v1/jobs", {"entrypoint": "true"}).json()
    for query, field in [
        (f"/v1/jobs/{job['id']}/events?after={HUGE}", "after"),
        (f"/v1/jobs/{job['id']}/events?after={MAX_INT32 + 1}", "after"),
        (f"/v1/jobs/{job['id']}/events?after=-1", "after"),
        (f"/v1/jobs/{job['id']}/logs?offset={HUGE}", "offset"),
        (f"/v1/jobs/{job['id']}/logs?offset={MAX_INT64 + 1}", "offset"),
        (f"/v1/jobs/{job['id']}/logs?attempt={HUGE}", "attempt"),
        (f"/v1/jobs/{job['id']}/logs?tail={HUGE}", "tail"),
        (f"/v1/jobs?limit={HUGE}", "limit"),
        (f"/v1/jobs/{job['id']}/events/stream?after={HUGE}", "after"),
        (f"/v1/jobs/{job['id']}/events/stream?log_offset={HUGE}", "log_offset"),
        (f"/v1/events/stream?after={HUGE}", "after"),
        (f"/api/history/jobs?pageSize={HUGE}", "pageSize"),  # a compat route
    ]:
        _refused(_call(live_idle, "GET", query), field)
    r = httpx.get(
        f"{live_idle.url}/v1/jobs/{job['id']}/events/stream",
        headers={"Authorization": f"Bearer {live_idle.admin_key}", "Last-Event-ID": str(HUGE)},
        timeout=30,
    )
    _refused(r, "Last-Event-ID", "INVALID_INPUT")
    # the largest values in range are answered
    ok = _call(live_idle, "GET", f"/v1/jobs/{job['id']}/events?after={MAX_INT32}")
    assert ok.status_code == 200 and ok.json()["items"] == [], ok.text
    ok = _call(live_idle, "GET", f"/v1/jobs/{job['id']}/logs?offset={MAX_INT64}")
    assert ok.status_code == 200, ok.text


def test_out_of_range_body_fields_are_422(live_idle: LiveServer) -> None:
    for path, body, field in [
        ("/v1/jobs", {"entrypoint": "true", "priority": HUGE}, "priority"),
        ("/v1/jobs", {"entrypoint": "true", "timeout_s": HUGE}, "timeout_s"),
        ("/v1/jobs", {"entrypoint": "true", "max_attempts": HUGE}, "max_attempts"),
        (
            "/v1/environments",
            {"name": "e1", "max_concurrent_jobs": MAX_INT32 + 1},
            "max_concurrent_jobs",
        ),
        ("/v1/environments", {"name": "e2", "memory_limit_mb": HUGE}, "memory_limit_mb"),
        ("/v1/environments", {"name": "e3", "cpu_slots": HUGE}, "cpu_slots"),
        ("/v1/models", {"name": "m1", "retention_hours": HUGE}, "retention_hours"),
        (
            "/v1/models",
            {"name": "m2", "expected_interval_minutes": MAX_INT32 + 1},
            "expected_interval_minutes",
        ),
        ("/api/v1/sources", {"name": "s1", "retention_hours": HUGE}, "retention_hours"),  # compat
        (
            "/api/v1/sources",
            {"name": "s2", "expectedintervalminutes": HUGE},
            "expectedintervalminutes",
        ),
    ]:
        _refused(_call(live_idle, "POST", path, body), field)
    env = _call(live_idle, "POST", "/v1/environments", {"name": "fine"})
    assert env.status_code == 201, env.text
    r = _call(live_idle, "PATCH", "/v1/environments/fine", {"max_concurrent_jobs": HUGE})
    _refused(r, "max_concurrent_jobs")
    model = _call(live_idle, "POST", "/v1/models", {"name": "fine"})
    assert model.status_code == 201, model.text
    _refused(
        _call(live_idle, "PATCH", "/v1/models/fine", {"retention_hours": HUGE}), "retention_hours"
    )
    # a batch names the job and the field
    r = _call(
        live_idle,
        "POST",
        "/v1/jobs/batch",
        {"jobs": [{"entrypoint": "true", "max_attempts": HUGE}]},
    )
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    assert item["status_code"] == 422 and "jobs.0.max_attempts" in item["error"]["message"]


def test_out_of_range_report_numbers_are_422(live_idle: LiveServer) -> None:
    services = live_idle.services
    job = _call(live_idle, "POST", "/v1/jobs", {"entrypoint": "true"}).json()
    assert services.dispatcher is not None
    secret = new_token_secret()
    request = ClaimRequest(
        node_id="n1", lease_ttl_s=600, max_slots=1, token_hashes=(hash_secret(secret),)
    )
    assert services.dispatcher.claims.step(now=services.clock.now(), claim=request).claimed
    token = job_token(job["id"], secret)
    path = f"/v1/jobs/{job['id']}/report"
    for body, field in [
        ({"type": "metrics", "records_processed": HUGE}, "records_processed"),
        ({"type": "metrics", "total_records": MAX_INT64 + 1}, "total_records"),
        ({"type": "metrics", "errors": MAX_INT32 + 1}, "errors"),
        ({"type": "item", "index": HUGE}, "index"),
        ({"type": "progress", "percent": HUGE}, "percent"),
    ]:
        _refused(_call(live_idle, "POST", path, body, token=token), field, "INVALID_INPUT")
    r = _call(
        live_idle, "POST", path, {"type": "metrics", "records_processed": MAX_INT64}, token=token
    )
    assert r.status_code == 202, r.text


def _unbounded(
    schema: Any, where: str, components: dict[str, Any], seen: frozenset[str]
) -> list[str]:
    """Integers in ``schema`` without a maximum (``$ref``s followed once)."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return (
            [] if name in seen else _unbounded(components[name], where, components, seen | {name})
        )
    found = []
    if schema.get("type") == "integer" and "maximum" not in schema:
        found.append(where)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _unbounded(sub, where, components, seen)
    for name, sub in schema.get("properties", {}).items():
        found += _unbounded(sub, f"{where}.{name}", components, seen)
    if "items" in schema:
        found += _unbounded(schema["items"], f"{where}[]", components, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        found += _unbounded(extra, f"{where}{{}}", components, seen)
    return found


def test_every_integer_a_request_carries_has_a_maximum(live_idle: LiveServer) -> None:
    """The OpenAPI schema (native and compat routes): every integer query parameter and
    request body field is bounded (use the types of ``jobyard.api.bounds``)."""
    spec = httpx.get(f"{live_idle.url}/openapi.json", timeout=30).json()
    components = spec.get("components", {}).get("schemas", {})
    found: list[str] = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                where = f"{method.upper()} {path} ?{param['name']}"
                found += _unbounded(param.get("schema"), where, components, frozenset())
            for content in op.get("requestBody", {}).get("content", {}).values():
                where = f"{method.upper()} {path} body"
                found += _unbounded(content.get("schema"), where, components, frozenset())
    assert found == []
