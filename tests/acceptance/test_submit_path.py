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
