"""Listing, filters, pagination, logs and the error shape over real HTTP."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from jobyard import Client
from jobyard.api.app import takes_gzip
from tests.conftest import LiveServer, ServicesFactory

PY = sys.executable


@pytest.fixture
def idle(make_services: ServicesFactory, serve: Callable[[Any], LiveServer]) -> LiveServer:
    """A server whose dispatcher does not run: submitted jobs stay queued."""
    return serve(make_services(start=False))


def test_pagination_filters_and_summary(idle: LiveServer) -> None:
    from jobyard import Client
    from jobyard.domain.auth import Role

    auth = idle.services.auth
    keys = {
        n: auth.create_key(tenant_id="default", name=n, role=Role.MEMBER)[1]
        for n in ("alice", "bob")
    }
    with idle.client() as c:
        made = []
        for i in range(7):
            with Client(idle.url, keys["alice" if i < 5 else "bob"]) as submitter:
                made.append(
                    submitter.submit(
                        "true",
                        name=f"j{i}",
                        priority="high" if i % 2 else "low",
                        job_type="etl" if i < 3 else "report",
                    )
                )
        c.cancel(made[0].id)
        page1 = c.list(limit=3)
        assert [j.name for j in page1.items] == ["j6", "j5", "j4"]
        assert page1.summary.total == 7
        assert page1.summary.by_status == {"queued": 6, "cancelled": 1}
        page2 = c.list(limit=3, cursor=page1.next_cursor)
        page3 = c.list(limit=3, cursor=page2.next_cursor)
        assert [j.name for j in page2.items + page3.items] == ["j3", "j2", "j1", "j0"]
        assert page3.next_cursor is None
        assert [j.name for j in c.iter_jobs(limit=2)] == [f"j{i}" for i in range(6, -1, -1)]

        assert {j.name for j in c.list(status="cancelled").items} == {"j0"}
        assert len(c.list(status=["queued", "cancelled"]).items) == 7
        assert len(c.list(status="queued,cancelled").items) == 7
        assert {j.name for j in c.list(priority="high").items} == {"j1", "j3", "j5"}
        assert {j.name for j in c.list(job_type="etl").items} == {"j0", "j1", "j2"}
        by_bob = c.list(submitted_by="bob")
        assert {j.name for j in by_bob.items} == {"j5", "j6"}
        assert by_bob.summary.total == 2
        # the summary ignores the status filter, so a UI can show counts per tab
        assert c.list(status="cancelled").summary.by_status == {"queued": 6, "cancelled": 1}
        future = datetime.now(UTC) + timedelta(hours=1)
        assert c.list(created_from=future).items == []
        assert len(c.list(created_to=future).items) == 7


def _raw(live: LiveServer, method: str, path: str, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {live.admin_key}", **kw.pop("headers", {})}
    return httpx.request(method, live.url + path, headers=headers, timeout=10, **kw)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entrypoint": "true", "priority": "urgent"}, "body.priority"),
        ({"entrypoint": "true", "status": "succeeded"}, "body.status"),
        ({"entrypoint": "true", "timeout_s": -1}, "body.timeout_s"),
        ({"entrypoint": ""}, "body.entrypoint"),
        ({"entrypoint": []}, "body.entrypoint"),
        ({"name": "no entrypoint"}, "entrypoint is required"),
        ({"entrypoint": "true", "parameters": [1, 2]}, "body.parameters"),
        ({"entrypoint": "true", "metadata": {"a": 1}}, "body.metadata.a"),
        ({"entrypoint": "true", "env": {"JOBYARD_JOB_ID": "x"}}, "env"),
        ({"entrypoint": "true", "env": {"1BAD": "x"}}, "env"),
    ],
)
def test_validation_errors_name_the_field(idle: LiveServer, body: dict, field: str) -> None:  # type: ignore[type-arg]
    r = _raw(idle, "POST", "/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert set(err) == {"code", "message", "details"}
    assert err["code"] in ("VALIDATION_ERROR", "INVALID_INPUT")
    assert field in err["message"]
    assert _raw(idle, "GET", "/v1/jobs").json()["summary"]["total"] == 0


def test_bad_query_values(idle: LiveServer) -> None:
    for query, field in [
        ("status=bogus", "status"),
        ("priority=urgent", "priority"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=%%%", "cursor"),
        ("created_from=yesterday", "created_from"),
    ]:
        r = _raw(idle, "GET", f"/v1/jobs?{query}")
        assert r.status_code == 422, (query, r.text)
        assert field in r.json()["message"]


def test_not_json_and_too_large(idle: LiveServer) -> None:
    r = _raw(
        idle, "POST", "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = _raw(idle, "POST", "/v1/jobs", json={"entrypoint": "x" * 2_000_000})
    assert r.status_code == 413
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_auth_and_not_found(idle: LiveServer) -> None:
    assert httpx.get(idle.url + "/v1/jobs").status_code == 401
    r = httpx.get(idle.url + "/v1/jobs", headers={"Authorization": "Bearer jy_nope_nope"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
    r = httpx.get(idle.url + "/v1/jobs", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    key_id = idle.admin_key.split("_")[1]
    forged = f"jy_{key_id}_{'x' * 40}"
    assert (
        httpx.get(idle.url + "/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    for path in ("/v1/jobs/nope", "/v1/jobs/nope/logs", "/v1/jobs/nope/events"):
        r = _raw(idle, "GET", path)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert _raw(idle, "POST", "/v1/jobs/nope/cancel").status_code == 404
    assert _raw(idle, "GET", "/v1/nothing-here").json()["code"] == "NOT_FOUND"
    assert httpx.get(idle.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(idle.url + "/readyz").status_code == 200
    assert httpx.get(idle.url + "/openapi.json", timeout=30).json()["info"]["title"] == "jobyard"
    assert httpx.get(idle.url + "/docs").status_code == 200


def test_the_openapi_document_gzipped_or_not_is_the_same(idle: LiveServer) -> None:
    """``/openapi.json`` comes gzipped (as the server keeps it) to a client that takes
    gzip, as text to one that does not; the same document either way."""
    url = idle.url + "/openapi.json"

    def raw(accept_encoding: str) -> tuple[httpx.Headers, bytes]:
        """The answer's headers and its bytes as sent (not decoded)."""
        headers = {"Accept-Encoding": accept_encoding}
        with httpx.stream("GET", url, headers=headers, timeout=30) as r:
            return r.headers, b"".join(r.iter_raw())

    headers, text = raw("identity")
    assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"
    assert json.loads(text)["info"]["title"] == "jobyard"
    for taking in ("gzip", "br, gzip;q=0.5", "*", "deflate, x-gzip"):
        headers, packed = raw(taking)
        assert headers["content-encoding"] == "gzip", taking
        assert gzip.decompress(packed) == text and len(packed) < len(text) / 5
    for refusing in ("gzip;q=0", "deflate", "*;q=0", "*, gzip;q=0", ""):
        headers, plain = raw(refusing)
        assert "content-encoding" not in headers and plain == text, refusing
    assert httpx.get(url, timeout=30).json() == json.loads(text)  # httpx takes gzip
    assert takes_gzip("gzip;q=0.001") and not takes_gzip("gzip;q=0.0, *")


def test_revoked_and_expired_keys(idle: LiveServer) -> None:
    services = idle.services
    from jobyard.domain.auth import Role

    key, secret = services.auth.create_key(tenant_id="default", name="temp", role=Role.MEMBER)
    ok = httpx.get(idle.url + "/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200  # the key is now cached: the revocation must still bite
    gone = httpx.delete(
        idle.url + f"/v1/keys/{key.id}",
        headers={"Authorization": f"Bearer {idle.admin_key}"},
    )
    assert gone.status_code == 204
    r = httpx.get(idle.url + "/v1/jobs", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    past = services.clock.now() - timedelta(seconds=1)
    _, expired = services.auth.create_key(
        tenant_id="default", name="old", role=Role.MEMBER, expires_at=past
    )
    r = httpx.get(idle.url + "/v1/jobs", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["message"]


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_time(
    make_services: ServicesFactory,
    serve,
) -> None:
    """Another replica revoking a key (here: the database row changed behind this
    process's back) is seen once the key's cache entry is older than KEY_CACHE."""
    from jobyard.clock import ManualClock
    from jobyard.domain.auth import Role
    from jobyard.service.auth import KEY_CACHE

    clock = ManualClock()
    live = serve(make_services(start=False, clock=clock))
    services = live.services
    key, secret = services.auth.create_key(tenant_id="default", name="temp", role=Role.MEMBER)
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(live.url + "/v1/jobs", headers=headers).status_code == 200
    services.auth.store.revoke_key("default", key.id, clock.now())  # as another replica does
    assert httpx.get(live.url + "/v1/jobs", headers=headers).status_code == 200
    clock.advance(KEY_CACHE.total_seconds())
    r = httpx.get(live.url + "/v1/jobs", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["message"]


def test_logs_offset_tail_and_follow(client: Client) -> None:
    code = "import time\nfor i in range(8):\n    print(f'line {i}', flush=True); time.sleep(0.05)"
    job = client.submit([PY, "-c", code])
    streamed = "".join(client.follow_logs(job.id))
    assert streamed.splitlines() == [f"line {i}" for i in range(8)]
    assert client.get(job.id).status == "succeeded"
    assert client.logs(job.id, tail=2).splitlines() == ["line 6", "line 7"]
    chunk = client.read_logs(job.id, offset=7)
    assert chunk.offset == 7 and chunk.text.startswith("line 1")
    assert chunk.next_offset == len(streamed.encode())
    assert client.logs(job.id, offset=chunk.next_offset) == ""
    assert "".join(client.follow_logs(job.id, offset=chunk.next_offset)) == ""


def test_time_ranges_pages_and_counts(
    make_services: ServicesFactory, serve: Callable[[Any], LiveServer]
) -> None:
    from jobyard.clock import ManualClock

    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    live = serve(make_services(start=False, clock=clock))
    with live.client() as c:
        made = []
        for i in range(6):  # one job an hour, j0 … j5
            made.append(c.submit("true", name=f"j{i}"))
            clock.advance(3600)
        c.cancel(made[2].id)

        def names(**params: Any) -> list[str]:
            return [j.name or "" for j in c.iter_jobs(limit=2, **params)]

        hour = timedelta(hours=1)
        assert names(created_from=start + 2 * hour) == ["j5", "j4", "j3", "j2"]
        assert names(created_to=start + 2 * hour) == ["j2", "j1", "j0"]
        assert names(created_from=start + hour, created_to=start + 3 * hour) == ["j3", "j2", "j1"]
        assert names(
            created_from=start + hour, created_to=start + 3 * hour, status="cancelled"
        ) == ["j2"]
        assert names(created_from=start + 6 * hour) == []
        assert names(created_to=start - hour) == []
        page = c.list(created_from=start + hour, created_to=start + 3 * hour, limit=1)
        assert page.summary.by_status == {"queued": 2, "cancelled": 1}
        assert c.list(created_to=start + 2 * hour).summary.total == 3
        assert c.list(created_from=start + 2 * hour).summary.total == 4
