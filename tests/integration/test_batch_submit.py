"""``POST /v1/jobs/batch`` over real HTTP: one transaction, a result or an error per job
in the request's order, idempotency per job, quotas, and the jobs run."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobyard import errors
from jobyard.api.schemas.jobs import BatchItemOut, JobBatchOut, JobCreate, batch_json
from jobyard.clock import to_epoch
from jobyard.domain.auth import Role
from jobyard.domain.jobs import DEFAULT_TENANT_ID, JobSpec
from jobyard.domain.states import JobState
from jobyard.service.jobs import BatchResult
from jobyard.service.submission import JobRequest
from jobyard.store.claims import ClaimStore
from jobyard.store.jobs import NewJob
from jobyard.store.tables import job_events, jobs
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory, wait_for

PY = sys.executable
LATER = "2099-01-01T00:00:00Z"


def _post(live: LiveServer, body: object) -> httpx.Response:
    return httpx.post(
        f"{live.url}/v1/jobs/batch",
        json=body,
        headers={"Authorization": f"Bearer {live.admin_key}"},
        timeout=30,
    )


def test_each_job_gets_its_own_result_in_one_transaction(
    make_services: ServicesFactory,
    serve,
) -> None:
    live = serve(make_services(start=False))
    jobs = [
        {"entrypoint": "true", "name": "plain", "scheduled_at": LATER},
        {"entrypoint": "true", "priority": "urgent"},
        {"model": "no-such-model:1"},
        {"entrypoint": "true", "submission_id": "a", "scheduled_at": LATER},
        {"entrypoint": "true", "submission_id": "a", "scheduled_at": LATER},
        {"entrypoint": "false", "submission_id": "a", "scheduled_at": LATER},
        "not a job",
        {"entrypoint": ["echo", "hi"], "env": {"JOBYARD_X": "1"}},
    ]
    before = live.services.db.group.transactions
    r = _post(live, {"jobs": jobs})
    assert r.status_code == 200, r.text
    out = r.json()
    assert live.services.db.group.transactions == before + 1
    items = out["items"]
    assert [i["index"] for i in items] == list(range(len(jobs)))
    assert [i["status_code"] for i in items] == [201, 422, 422, 201, 200, 409, 422, 422]
    assert (out["created"], out["existing"], out["failed"]) == (2, 1, 5)
    assert items[1]["error"]["code"] == "VALIDATION_ERROR"
    assert items[1]["error"]["message"].startswith("jobs.1.priority")
    assert "no-such-model" in items[2]["error"]["message"]
    assert items[4]["id"] == items[3]["id"]
    assert items[5]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "JOBYARD_X" in items[7]["error"]["message"]
    with live.client() as client:
        plain = client.get(items[0]["id"])
        assert plain.name == "plain" and plain.status == "scheduled"
        assert [e.to_state for e in client.events(plain.id)] == ["scheduled"]
        assert client.list(limit=500).summary.total == 2


def test_whole_batch_errors(make_services: ServicesFactory, serve) -> None:
    live = serve(make_services(start=False))
    assert _post(live, {"jobs": []}).status_code == 422
    too_many = _post(live, {"jobs": [{"entrypoint": "true"}] * 1001})
    assert too_many.status_code == 422 and "jobs" in too_many.json()["message"]
    assert _post(live, {"job": []}).status_code == 422
    anonymous = httpx.post(f"{live.url}/v1/jobs/batch", json={"jobs": [{"entrypoint": "true"}]})
    assert anonymous.status_code == 401
    with live.client() as client:
        assert client.list().summary.total == 0


def test_a_thousand_jobs_and_the_waiting_quota(
    make_services: ServicesFactory,
    serve,
) -> None:
    services = make_services(start=False)
    live = serve(services)
    with live.client() as client:
        batch = client.submit_batch(
            [{"entrypoint": "true", "name": f"j{i}", "scheduled_at": LATER} for i in range(1000)]
        )
        assert batch.created == 1000 and all(i.ok and i.status == "scheduled" for i in batch.items)
        assert len({i.id for i in batch.items}) == 1000
        assert client.get(str(batch.items[999].id)).name == "j999"
        services.tenancy.store.set_quotas(DEFAULT_TENANT_ID, {"max_queued_jobs": 1002})
        limited = client.submit_batch([{"entrypoint": "true"}] * 5)
        assert [i.status_code for i in limited.items] == [201, 201, 429, 429, 429]
        assert limited.items[2].error is not None
        assert limited.items[2].error["code"] == "QUOTA_EXCEEDED"
        assert "1002 waiting jobs" in limited.items[2].error["message"]


def test_batch_jobs_run(live: LiveServer) -> None:
    with live.client() as client:
        batch = client.submit_batch(
            [{"entrypoint": [PY, "-c", f"print({i})"], "name": f"run{i}"} for i in range(4)]
        )
        assert batch.created == 4
        for item in batch.items:
            done = client.wait(str(item.id), timeout=30)
            assert done.status == "succeeded"
            assert client.logs(done.id).strip() == str(item.index)
        wait_for(lambda: client.list(status="succeeded").summary.by_status.get("succeeded") == 4)


def test_a_batch_shares_one_time_and_queues_in_its_order(
    make_services: ServicesFactory,
    serve,
) -> None:
    """The jobs of a batch are created at one time (one clock read per batch); they
    still queue in the request's order, and each has its own id and event."""
    services = make_services(start=False)
    live = serve(services)
    with live.client() as client:
        batch = client.submit_batch(
            [{"entrypoint": "true", "name": f"q{i}", "priority": "high"} for i in range(5)]
        )
        assert batch.created == 5
        jobs = [client.get(str(item.id)) for item in batch.items]
        assert len({j.created_at for j in jobs}) == 1
        assert all(j.status == "queued" and j.queued_at == j.created_at for j in jobs)
        assert all([e.to_state for e in client.events(j.id)] == ["queued"] for j in jobs)
    claims = ClaimStore(services.db)
    claimed = []
    for _ in range(5):
        job = claims.claim_next(node_id="n1", now=services.clock.now(), lease_ttl_s=60)
        assert job is not None
        claimed.append(job.spec.name)
    assert claimed == [f"q{i}" for i in range(5)]


def test_a_batchs_plain_jobs_get_random_ids_in_ascending_order(
    make_services: ServicesFactory,
    serve,
) -> None:
    """A batch's plain jobs take random (version 4) ids in ascending order, so their rows
    go into the id indexes from left to right; the jobs keep the request's order (seq)
    and each id is new."""
    services = make_services(start=False)
    live = serve(services)
    sent = [{"entrypoint": "true", "name": f"j{i}", "scheduled_at": LATER} for i in range(60)]
    sent[7] = {"entrypoint": " "}  # refused: it takes no id, the others keep their order
    answers = [_post(live, {"jobs": sent}).json() for _ in range(2)]
    for answer in answers:
        ids = [item["id"] for item in answer["items"] if item["error"] is None]
        assert len(ids) == 59 and ids == sorted(ids)
        assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    first, second = ([i["id"] for i in a["items"] if i["id"]] for a in answers)
    assert not set(first) & set(second)
    assert not first[-1] < second[0]  # random, not ordered by time across batches
    with services.db.read() as conn:
        rows = conn.execute(
            sa.select(jobs.c.name).where(jobs.c.id.in_(first)).order_by(jobs.c.seq)
        ).all()
    assert [name for (name,) in rows] == [f"j{i}" for i in range(60) if i != 7]


def test_the_answer_is_the_models_json() -> None:
    """``batch_json`` writes what FastAPI wrote for the ``JobBatchOut`` it answered
    before: created, found and failed jobs, an error's details included."""
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    queued = NewJob("t", JobSpec(entrypoint="true"), JobState.QUEUED, 1.0, now, None, "q")
    later = NewJob("t", JobSpec(entrypoint="true"), JobState.SCHEDULED, 1.0, now, None, "s")
    results = [
        BatchResult(job=queued.job(1), created=True),
        BatchResult(error=errors.ValidationFailed("jobs.1.priority: bad", errors=[{"a": 1}])),
        BatchResult(job=later.job(2)),
        BatchResult(error=errors.IdempotencyConflict("used", job_id="j-1")),
        BatchResult(job=later.job(3), created=True),
    ]
    items = [BatchItemOut.of(i, r) for i, r in enumerate(results)]
    model = JobBatchOut(items=items, created=2, existing=1, failed=2)
    assert batch_json(results) == model.__pydantic_serializer__.to_json(model, by_alias=True)
    assert json.loads(batch_json(results))["items"][3]["error"]["details"] == {"job_id": "j-1"}


def test_a_batch_answers_each_job_with_its_stored_seq(make_services: ServicesFactory) -> None:
    """A batch's jobs as answered (not read back) are the rows stored: their seqs
    worked out from the largest before and after the insert (SQLite), or read back when
    that does not tell (the largest at 2**63 - 1: new rows get random free numbers),
    jobs skipped included, and every other field as a new job's."""
    services = make_services(start=False)
    _, key = services.auth.create_key(tenant_id=DEFAULT_TENANT_ID, name="t", role=Role.ADMIN)
    principal = services.auth.authenticate(f"Bearer {key}")
    body = [
        {"entrypoint": "true", "scheduled_at": LATER},
        {"entrypoint": "true", "scheduled_at": LATER, "submission_id": "k"},
        {"entrypoint": "true", "scheduled_at": LATER, "submission_id": "k"},
        {"entrypoint": "true", "scheduled_at": LATER},
    ]
    results = services.jobs.submit_batch(principal, _requests(body))
    assert results[2].job == results[1].job and not results[2].created
    _assert_stored(services, results, 3)
    if services.db.dialect == "sqlite":  # new rows now get random free seqs
        with services.db.write() as conn:
            conn.execute(sa.text("UPDATE jobs SET seq = 9223372036854775807 WHERE seq = 1"))
    _assert_stored(services, services.jobs.submit_batch(principal, _requests(body[:1] * 3)), 3)


def _requests(body: list[dict[str, str]]) -> list[JobRequest | errors.JobyardError]:
    return [JobCreate.model_validate(j).to_request(None) for j in body]


def _assert_stored(services: Services, results: list[BatchResult], n: int) -> None:
    """The jobs answered are the rows stored, every field (seq included)."""
    created = [r.job for r in results if r.created and r.job is not None]
    assert len(created) == n
    assert created == [services.jobs.store.get(DEFAULT_TENANT_ID, j.id) for j in created]


def test_a_job_without_a_key_is_not_the_job_keyed_none(make_services: ServicesFactory) -> None:
    """A job sent without a submission_id is new even when the batch also names a job
    by the key "None" that exists (the key was looked up as ``str(None)``)."""
    services = make_services(start=False)
    _, key = services.auth.create_key(tenant_id=DEFAULT_TENANT_ID, name="t", role=Role.ADMIN)
    principal = services.auth.authenticate(f"Bearer {key}")
    keyed = {"entrypoint": "true", "scheduled_at": LATER, "submission_id": "None"}
    [first] = services.jobs.submit_batch(principal, _requests([keyed]))
    assert first.created and first.job is not None
    results = services.jobs.submit_batch(
        principal, _requests([keyed, {"entrypoint": "false", "scheduled_at": LATER}])
    )
    assert results[0].job == first.job and not results[0].created
    assert results[1].error is None and results[1].created


def test_a_batch_job_is_stored_as_a_single_submit_stores_it(
    make_services: ServicesFactory,
    serve,
) -> None:
    """Each job of a batch (times in other zones, equal or not, between the batch's
    own time; priorities; ``retry_on`` default, chosen or empty) reads back, with its
    first event, as the same body sent alone through ``POST /v1/jobs`` does, and the
    queued ones are claimed by priority, then in the request's order."""
    services = make_services(start=False)
    live = serve(services)
    bodies: list[dict[str, object]] = [
        {"entrypoint": "true", "name": "a", "scheduled_at": LATER},
        {"entrypoint": "true", "name": "b", "scheduled_at": "2099-01-01T02:00:00+02:00"},
        {"entrypoint": "true", "name": "c", "scheduled_at": "2098-06-30T23:59:59.5-07:00"},
        {"entrypoint": "true", "name": "d", "priority": "low", "retry_on": ["failed"]},
        {"entrypoint": "true", "name": "e", "scheduled_at": LATER, "retry_on": []},
        {"entrypoint": "true", "name": "f", "priority": "high", "max_attempts": 3},
        {"entrypoint": "true", "name": "g", "retry_on": ["node_lost", "failed"]},
        {"entrypoint": "true", "name": "h", "scheduled_at": "2098-06-30T23:59:59.5-07:00"},
    ]
    answer = _post(live, {"jobs": bodies})
    assert answer.status_code == 200, answer.text
    batch_ids = [item["id"] for item in answer.json()["items"]]
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as http:
        single_ids = [http.post("/v1/jobs", json=b).json()["id"] for b in bodies]

        def stored(job_id: str) -> tuple[dict[str, object], list[tuple[object, ...]]]:
            job = http.get(f"/v1/jobs/{job_id}").json()
            for name in ("id", "created_at", "updated_at", "queued_at", "queue_time_ms"):
                job.pop(name)
            for name in ("pending_reason", "queue_position", "estimated_start"):
                job.pop(name, None)  # where it stands in the queue
            events = http.get(f"/v1/jobs/{job_id}/events").json()["items"]
            return job, [(e["kind"], e["to_state"], e["message"]) for e in events]

        for batch_id, single_id in zip(batch_ids, single_ids, strict=True):
            assert stored(batch_id) == stored(single_id)
        jobs = {
            b["name"]: http.get(f"/v1/jobs/{i}").json()
            for b, i in zip(bodies, batch_ids, strict=True)
        }
    assert jobs["a"]["scheduled_at"] == jobs["b"]["scheduled_at"]
    c_at = datetime.fromisoformat(jobs["c"]["scheduled_at"])
    assert c_at == datetime(2098, 7, 1, 6, 59, 59, 500000, tzinfo=UTC)
    assert jobs["d"]["retry_on"] == ["failed"] and jobs["e"]["retry_on"] == []
    assert jobs["a"]["retry_on"] == ["failed", "timed_out", "node_lost"]
    assert jobs["g"]["retry_on"] == ["node_lost", "failed"]
    claims = ClaimStore(services.db)
    claimed = []
    while job := claims.claim_next(node_id="n1", now=services.clock.now(), lease_ttl_s=60):
        claimed.append((job.spec.name, job.id in batch_ids))
    assert claimed == [
        ("f", True),
        ("f", False),
        ("g", True),
        ("g", False),
        ("d", True),
        ("d", False),
    ]


_TIME = st.sampled_from(
    [LATER, "2099-01-01T02:00:00+02:00", "2098-06-30T23:59:59.5-07:00", "2000-01-01T00:00:00Z"]
)
#: a job's body: plain ones of the simplest kind (read without pydantic), plain ones
#: with more fields (read by JobCreate), keyed ones and invalid ones
_BODIES = st.one_of(
    st.fixed_dictionaries(
        {"entrypoint": st.sampled_from(["true", " x ", "\u2003", ""])},
        optional={
            "scheduled_at": st.one_of(_TIME, st.just("2099-01-01")),
            "priority": st.sampled_from(["low", "high", "critical", "urgent"]),
            "name": st.sampled_from(["n", "", "x" * 201]),
            "description": st.just("d"),
            "job_type": st.just("etl"),
        },
    ),
    st.fixed_dictionaries(
        {"entrypoint": st.sampled_from([["echo", "hi"], ["", "x"], "true"])},
        optional={
            "scheduled_at": _TIME,
            "env": st.sampled_from([{"A": "1"}, {"JOBYARD_X": "1"}, {"1A": "x"}]),
            "parameters": st.just({"p": [1, {"q": None}]}),
            "metadata": st.just({"m": "v"}),
            "timeout_s": st.sampled_from([1, 2.5, 0]),
            "max_attempts": st.integers(1, 3),
            "retry_on": st.sampled_from([[], ["failed"], ["node_lost", "failed"]]),
            "retry_backoff_s": st.just(1),
            "continue_on_error": st.booleans(),
            "submission_id": st.sampled_from(["k1", "k2"]),
        },
    ),
)


def test_each_way_to_accept_a_job_stores_the_same_row(
    make_services: ServicesFactory, serve
) -> None:
    """Whichever way a batch takes for a job (plain fields without pydantic, plain after
    ``JobCreate``, a ``JobSpec``), the job's answer, its row (every column but its id,
    seq, times and key) and its first event are those of the same body sent alone
    (under another key)."""
    live = serve(make_services(start=False))
    headers = {"Authorization": f"Bearer {live.admin_key}"}

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(bodies=st.lists(_BODIES, min_size=1, max_size=12))
    def check(bodies: list[dict[str, Any]]) -> None:
        run = uuid.uuid4().hex
        keyed = [
            b | {"submission_id": f"{run}-{b['submission_id']}"} if "submission_id" in b else b
            for b in bodies
        ]
        alone = [
            b | {"submission_id": f"{run}-single-{i}"} if "submission_id" in b else b
            for i, b in enumerate(bodies)
        ]
        with httpx.Client(base_url=live.url, headers=headers, timeout=30) as http:
            answer = http.post("/v1/jobs/batch", json={"jobs": keyed})
            assert answer.status_code == 200, answer.text
            items = answer.json()["items"]
            singles = [http.post("/v1/jobs", json=b) for b in alone]
        seen: set[object] = set()
        for body, item, single in zip(bodies, items, singles, strict=True):
            key = body.get("submission_id")
            if key is not None and key in seen:  # used earlier: that job or a conflict
                continue
            seen.add(key)
            assert item["status_code"] == single.status_code
            if item["error"] is not None:
                assert item["error"]["code"] == single.json()["code"]
            else:
                assert _row(live, item["id"]) == _row(live, single.json()["id"])

    check()


def _row(live: LiveServer, job_id: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """A job's row without its id, seq and times (its sort key less its creation time),
    and its events (at its creation time)."""
    with live.services.db.read() as conn:
        row = dict(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one())
        events = conn.execute(
            sa.select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.seq)
        ).all()
    created = row.pop("created_at")
    assert row.pop("updated_at") == created
    queued = row.pop("queued_at")
    assert queued in (None, created)
    row["queued"] = queued is not None
    row["sort_key"] = round(row["sort_key"] - to_epoch(created), 3) if queued else row["sort_key"]
    for name in ("id", "seq", "idempotency_key", "request_hash"):
        row.pop(name)
    assert all(e.at == created for e in events)
    return row, [(e.kind, e.from_state, e.to_state, e.message, e.data) for e in events]
