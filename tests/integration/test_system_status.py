"""System status, /metrics and readiness over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import statistics
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from jobyard.api import errors as api_errors
from jobyard.api.metrics import metrics_route
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.priorities import Priority, sort_key
from jobyard.domain.states import JobState
from jobyard.store.claims import ClaimStore
from jobyard.store.nodes import NodeStore
from jobyard.wiring import Services
from tests import conftest
from tests.conftest import PG_URL, LiveServer, ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="t", role=Role.ADMIN)
Serve = Callable[[Services], LiveServer]
HOUR = timedelta(hours=1)


def get(server: LiveServer, path: str, key: str = "", accept: str = "*/*") -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, headers={**auth, "Accept": accept}, timeout=10)


def run(services: Services, code: str, **spec: Any) -> Job:
    job, _ = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", code), **spec))
    return job


def ended(services: Services, job: Job) -> Job:
    return cast(Job, wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).is_terminal and j))


def secs(job: Job, start: str, end: str) -> float:
    return float((getattr(job, end) - getattr(job, start)).total_seconds())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_status_and_metrics_match_what_ran(make_services: ServicesFactory, serve: Serve) -> None:
    services = make_services(slots=1)
    server = serve(services)
    ok = ended(services, run(services, "pass"))
    bad = ended(services, run(services, "raise SystemExit(3)"))
    assert (ok.state, bad.state) == (JobState.SUCCEEDED, JobState.FAILED)
    long = run(services, "import time; time.sleep(60)")
    wait_for(lambda: services.jobs.get(ADMIN, long.id).state is JobState.RUNNING)
    for p in (Priority.CRITICAL, Priority.HIGH, Priority.HIGH, Priority.LOW):  # behind `long`
        run(services, "pass", priority=p)
    services.jobs.cancel(ADMIN, run(services, "pass").id)
    now = services.clock.now()
    run(services, "pass", scheduled_at=now + HOUR)

    # another tenant: two queued, one cancelled, one claimed by another node
    services.auth.store.ensure_tenant("other", "Other", now)
    _, other_key = services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    store = services.jobs.store

    def insert(priority: Priority, key: float | None = None) -> Job:
        job, _ = store.insert(
            tenant_id="other",
            spec=JobSpec(argv=(PY, "-c", "pass"), priority=priority),
            state=JobState.QUEUED,
            sort_key=key if key is not None else sort_key(now, priority, 300),
            now=now,
            request_hash=None,
            message="queued",
        )
        return job

    insert(Priority.NORMAL)
    insert(Priority.NORMAL)
    store.transition(insert(Priority.LOW), JobState.CANCELLED, now=now, message="cancelled")
    nodes = NodeStore(services.db)
    nodes.register(node_id="other-node", hostname="elsewhere", pid=1, slots=2, now=now)
    first = insert(Priority.CRITICAL, key=-1e12)  # first in the queue
    claimed = ClaimStore(services.db).claim_next(node_id="other-node", now=now, lease_ttl_s=3600)
    assert claimed is not None and claimed.id == first.id
    nodes.register(node_id="gone-node", hostname="h", pid=2, slots=4, now=now - HOUR)
    nodes.heartbeat("other-node", services.clock.now())

    assert get(server, "/v1/system/status").status_code == 401
    body = get(server, "/v1/system/status", server.admin_key).json()
    assert body["system_status"] == "degraded"  # gone-node is stale
    by_id = {n["node_id"]: n for n in body["execution_nodes"]}
    assert sorted(by_id) == ["gone-node", "other-node", "test-node"]
    local = by_id["test-node"]
    assert (local["status"], local["job_capacity"], local["used_slots"]) == ("active", 1, 1)
    assert local["active_jobs"] == 1 and local["node_id"] == services.node_id
    assert 0 <= local["cpu_percent"] <= 100 and 0 < local["memory_percent"] <= 100
    remote = by_id["other-node"]
    assert (remote["status"], remote["job_capacity"], remote["used_slots"]) == ("active", 2, 1)
    assert (remote["active_jobs"], remote["cpu_percent"], remote["memory_percent"]) == (
        0,
        None,
        None,
    )
    assert (by_id["gone-node"]["status"], by_id["gone-node"]["used_slots"]) == ("stale", 0)

    long = services.jobs.get(ADMIN, long.id)
    waits = [secs(j, "queued_at", "started_at") for j in (ok, bad, long)]
    queue = body["queue_statistics"]
    assert queue["by_priority"] == {"low": 1, "normal": 0, "high": 2, "critical": 1}
    assert (queue["total_queued"], queue["scheduled"], queue["running"]) == (4, 1, 1)
    assert queue["average_wait_ms"] == pytest.approx(statistics.mean(waits) * 1000, abs=2)
    ok_ms = secs(ok, "started_at", "ended_at") * 1000
    assert queue["estimated_drain_ms"] == pytest.approx(4 * ok_ms / 3, abs=3)

    perf = body["performance_metrics"]
    assert perf["by_outcome"] == {"succeeded": 1, "failed": 1, "timed_out": 0, "cancelled": 1}
    assert perf["jobs_completed_today"] == 3
    assert perf["success_rate_percent"] == 50.0
    assert perf["average_duration_ms"] == pytest.approx(ok_ms, abs=2)
    assert perf["throughput_per_hour"] == 3.0
    res = body["resource_utilization"]
    assert (res["total_slots"], res["used_slots"]) == (3, 2)
    assert 0 < res["memory_used_bytes"] < res["memory_total_bytes"]
    assert res["disk_free_bytes"] > 0

    theirs = get(server, "/v1/system/status", other_key).json()
    queue = theirs["queue_statistics"]
    assert queue["by_priority"] == {"low": 0, "normal": 2, "high": 0, "critical": 0}
    assert (queue["total_queued"], queue["scheduled"], queue["running"]) == (2, 0, 1)
    assert queue["average_wait_ms"] is None and queue["estimated_drain_ms"] is None
    perf = theirs["performance_metrics"]
    assert (perf["jobs_completed_today"], perf["by_outcome"]["cancelled"]) == (1, 1)
    by_id = {n["node_id"]: n for n in theirs["execution_nodes"]}
    assert (by_id["other-node"]["active_jobs"], by_id["test-node"]["active_jobs"]) == (1, 0)
    assert theirs["resource_utilization"]["used_slots"] == 2  # shared infrastructure

    m = samples(get(server, "/metrics").text)

    def value(name: str, **labels: str) -> float:
        return m[(name, frozenset(labels.items()))]

    expected = {"queued": 6, "scheduled": 1, "starting": 1, "running": 1, "cancelling": 0}
    expected |= {"succeeded": 1, "failed": 1, "timed_out": 0, "cancelled": 2}
    assert {s: value("jobyard_jobs", status=s) for s in expected} == expected
    depth = {p.value: value("jobyard_queue_depth", priority=p.value) for p in Priority}
    assert depth == {"low": 1, "normal": 2, "high": 2, "critical": 1}
    nodes_by_status = {s: value("jobyard_nodes", status=s) for s in ("active", "stale", "stopped")}
    assert nodes_by_status == {"active": 2, "stale": 1, "stopped": 0}
    assert (value("jobyard_slots_total"), value("jobyard_slots_used")) == (3, 2)
    duration = "jobyard_job_duration_seconds"
    ran = {s: value(f"{duration}_bucket", status=s, le="+Inf") for s in ("succeeded", "failed")}
    assert ran == {"succeeded": 1, "failed": 1}
    assert (duration + "_bucket", frozenset({("status", "cancelled"), ("le", "+Inf")})) not in m
    assert value(f"{duration}_gsum", status="succeeded") == pytest.approx(ok_ms / 1000, abs=2e-3)
    assert value(f"{duration}_bucket", status="succeeded", le="3600.0") == 1
    latency = "jobyard_dispatch_latency_seconds"
    assert value(f"{latency}_bucket", le="+Inf") == value(f"{latency}_gcount") == 3
    assert value(f"{latency}_gsum") == pytest.approx(sum(waits), abs=4e-3)
    assert value(f"{latency}_bucket", le="3600.0") == 3


def test_health_follows_nodes_and_queue(make_services: ServicesFactory, serve: Serve) -> None:
    services = make_services(start=False)  # no dispatcher: no node
    server = serve(services)
    services.auth.store.ensure_tenant("other", "Other", services.clock.now())
    _, other_key = services.auth.create_key(tenant_id="other", name="o", role=Role.MEMBER)

    def health(key: str) -> str:
        return str(get(server, "/v1/system/status", key).json()["system_status"])

    run(services, "pass")
    assert (health(server.admin_key), health(other_key)) == ("unhealthy", "degraded")
    nodes = NodeStore(services.db)
    nodes.register(node_id="n1", hostname="h", pid=1, slots=2, now=services.clock.now())
    assert (health(server.admin_key), health(other_key)) == ("healthy", "healthy")
    nodes.set_status("n1", "stopped", services.clock.now())
    assert health(server.admin_key) == "unhealthy"
    body = get(server, "/v1/system/status", server.admin_key).json()
    assert body["execution_nodes"][0]["status"] == "stopped"
    assert body["resource_utilization"]["total_slots"] == 0  # a stopped node has no slots


def test_metrics_can_require_an_operator_key(
    make_services: ServicesFactory, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    app = FastAPI()
    app.state.services = services
    api_errors.install(app)
    metrics_route(app, services, public=False)
    monkeypatch.setattr(conftest, "create_app", lambda _services: app)
    server = serve(services)
    services.auth.store.ensure_tenant("other", "Other", services.clock.now())
    _, other_admin = services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    _, member = services.auth.create_key(tenant_id="default", name="m", role=Role.MEMBER)
    assert get(server, "/metrics").status_code == 401
    assert [get(server, "/metrics", k).status_code for k in (other_admin, member)] == [403, 403]
    answer = get(server, "/metrics", server.admin_key)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert samples(answer.text)[("jobyard_slots_total", frozenset())] == 0
    openmetrics = get(server, "/metrics", server.admin_key, "application/openmetrics-text")
    assert "# TYPE jobyard_job_duration_seconds gaugehistogram" in openmetrics.text
    assert openmetrics.text.rstrip().endswith("# EOF")


def pg_admin(sql: str) -> None:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(sql))
    admin.dispose()


@pytest.fixture
def doomed(
    db_url: str, tmp_path: Path, make_services: ServicesFactory
) -> Iterator[tuple[Services, Callable[[], object]]]:
    """An API-only services and how to take its database away: move the data directory
    holding the SQLite file, or drop the PostgreSQL database made for the test."""
    data, name = tmp_path / "doomed", f"jobyard_ready_{uuid.uuid4().hex[:8]}"
    sqlite = db_url.startswith("sqlite")
    if not sqlite:
        pg_admin(f'CREATE DATABASE "{name}"')

    def take_away() -> object:
        if sqlite:
            return shutil.move(data, tmp_path / "moved")
        pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        return None

    url = "" if sqlite else db_url.rsplit("/", 1)[0] + f"/{name}"  # "": SQLite in data dir
    yield (
        make_services(start=False, data_dir=data, database_url=url, run_dispatcher=False),
        take_away,
    )
    if not sqlite:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_readyz_fails_while_the_database_is_gone(
    db_url: str,
    doomed: tuple[Services, Callable[[], object]],
    serve: Serve,
    request: pytest.FixtureRequest,
) -> None:
    services, take_away = doomed
    server = serve(services)
    assert get(server, "/readyz").status_code == 200
    take_away()
    healthz = get(server, "/healthz")
    assert healthz.status_code == 200 and healthz.json() == {"status": "ok"}
    if db_url.startswith("postgresql"):
        failed = get(server, "/v1/system/status", server.admin_key)
        assert failed.status_code == 503 and failed.json()["code"] == "STORE_UNAVAILABLE"
    ready = get(server, "/readyz")
    assert (ready.status_code, ready.headers["retry-after"]) == (503, "1")
    assert ready.json()["code"] == "STORE_UNAVAILABLE"
