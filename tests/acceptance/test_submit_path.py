"""The submit hot path through a real ``jobyard serve``: an accepted job is durable the
moment it is answered, and the fast path answers exactly like the route it bypasses."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import sqlalchemy as sa

from jobyard.store.database import Database
from jobyard.store.tables import job_events, jobs
from tests.acceptance.serverproc import StartServer
from tests.conftest import wait_for

BODY = {"entrypoint": "true", "scheduled_at": "2099-01-01T00:00:00Z", "name": "durable"}


def _key(server_home: object) -> str:
    creds = json.loads((server_home / "credentials.json").read_text())  # type: ignore[operator]
    return str(creds["api_key"])


def test_every_answered_submit_survives_a_kill(start_server: StartServer, db_url: str) -> None:
    """SIGKILL right after the answers: every job answered 201 is in the database with
    its first event (the answer waits for the commit), from one client and from eight."""
    server = start_server()
    headers = {"Authorization": f"Bearer {_key(server.home)}"}
    answered: list[str] = []
    with httpx.Client(base_url=server.url, headers=headers) as http:
        for _ in range(30):
            r = http.post("/v1/jobs", json=BODY)
            assert r.status_code == 201, r.text
            answered.append(r.json()["id"])

    def burst(_: int) -> list[str]:
        with httpx.Client(base_url=server.url, headers=headers) as http:
            return [http.post("/v1/jobs", json=BODY).json()["id"] for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        for ids in pool.map(burst, range(8)):
            answered.extend(ids)
    server.kill()
    db = Database(db_url)
    try:
        with db.read() as conn:
            stored = set(
                conn.execute(sa.select(jobs.c.id).where(jobs.c.id.in_(answered))).scalars()
            )
            events = conn.execute(
                sa.select(sa.func.count()).where(job_events.c.job_id.in_(answered))
            ).scalar_one()
    finally:
        db.dispose()
    assert len(answered) == 110
    assert stored == set(answered)
    assert events == len(answered)


def test_the_fast_path_answers_like_the_route(start_server: StartServer) -> None:
    """The same body through the fast path and through the route (a query string sends
    it there) gives the same fields and types; what the fast path does not take (an
    invalid body, no key, an idempotency key) gets the route's own answers."""
    server = start_server()
    headers = {"Authorization": f"Bearer {_key(server.home)}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        http.post("/v1/jobs", json=BODY)  # the key is cached from now on
        fast = http.post("/v1/jobs", json=BODY)
        routed = http.post("/v1/jobs", params={"insight": "false"}, json=BODY)
        assert fast.status_code == routed.status_code == 201
        assert fast.headers["content-type"] == routed.headers["content-type"]
        a, b = fast.json(), routed.json()
        assert a.keys() == b.keys()
        differ = {k for k in a if a[k] != b[k]}
        assert differ <= {"id", "created_at", "updated_at", "queue_time_ms"}, differ
        assert http.get(f"/v1/jobs/{a['id']}").json()["name"] == "durable"

        bad = http.post("/v1/jobs", json={**BODY, "priority": "urgent"})
        assert bad.status_code == 422 and bad.json()["code"] == "VALIDATION_ERROR"
        assert "priority" in bad.json()["message"]
        empty = http.post("/v1/jobs", json={"entrypoint": " "})
        assert empty.status_code == 422
        anonymous = httpx.post(f"{server.url}/v1/jobs", json=BODY)
        assert anonymous.status_code == 401
        wrong = httpx.post(
            f"{server.url}/v1/jobs", json=BODY, headers={"Authorization": "Bearer jy_x_y"}
        )
        assert wrong.status_code == 401
        first = http.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k1"})
        again = http.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k1"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        other = http.post(
            "/v1/jobs", json={**BODY, "name": "other"}, headers={"Idempotency-Key": "k1"}
        )
        assert other.status_code == 409


def test_the_front_logs_each_request_once_and_keeps_the_apps_answers(
    start_server: StartServer,
) -> None:
    """The fast path runs in front of FastAPI's middleware stack: a fast submit, a submit
    it hands to the route and any other request each get one access-log line, and the
    answers the stack gives (a body over the limit, a body that is not JSON, an unknown
    path) stay the same as with the route behind a query string."""
    server = start_server("--log-format", "json")
    headers = {"Authorization": f"Bearer {_key(server.home)}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        http.post("/v1/jobs", json=BODY)  # the key is cached from now on
        fast = http.post("/v1/jobs", json={**BODY, "name": "front"})
        assert fast.status_code == 201 and fast.json()["name"] == "front"
        big = {**BODY, "description": "x" * (1024 * 1024)}
        text = {"content-type": "text/plain"}
        for path in ("/v1/jobs", "/v1/jobs?insight=false"):
            too_large = http.post(path, json=big)
            assert too_large.status_code == 413
            assert too_large.json()["code"] == "PAYLOAD_TOO_LARGE"
        front, routed = (
            http.post(p, content=b"entrypoint=true", headers=text)
            for p in ("/v1/jobs", "/v1/jobs?insight=false")
        )
        assert (front.status_code, front.json()) == (routed.status_code, routed.json())
        assert front.status_code == 422
        missing = http.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"

    def access() -> list[tuple[str, str, int]]:
        lines = [json.loads(x) for x in server.log_path.read_text().splitlines() if x[:1] == "{"]
        return [
            (r["method"], r["path"], r["status"]) for r in lines if r["logger"] == "jobyard.access"
        ]

    expected = [
        ("POST", "/v1/jobs", 201),
        ("POST", "/v1/jobs", 201),
        *[("POST", "/v1/jobs", 413)] * 2,
        *[("POST", "/v1/jobs", 422)] * 2,
        ("GET", "/v1/nothing-here", 404),
    ]
    assert wait_for(lambda: access()[-len(expected) :] == expected, timeout=10), access()
