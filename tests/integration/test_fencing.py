"""Writes after the claim are fenced by the lease epoch, on both databases: once the job
was claimed again (attempt 2), what attempt 1 still reports (its last log scan: progress,
warnings, cells; its samples and results; its job token over HTTP) is not applied, and
attempt 2's progress stands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from jobyard import errors
from jobyard.dispatch.attempt import Attempt
from jobyard.dispatch.scanner import LogScanner
from jobyard.domain.auth import Principal, Role, hash_secret, job_token, new_token_secret
from jobyard.domain.jobs import ErrorType, Job, JobSpec, ResourceUsage
from jobyard.domain.results import Artifact, OutputType
from jobyard.domain.states import JobState
from jobyard.markers import format_marker
from jobyard.store.claims import AttemptEnd, ClaimRequest, Started
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def _claim(services: Services, secret: str) -> Job:
    """Claim the queued job as node n1 and mark it running; its token is ``secret``'s."""
    assert services.dispatcher is not None
    claims = services.dispatcher.claims
    now = services.clock.now()
    request = ClaimRequest(
        node_id="n1", lease_ttl_s=600, max_slots=1, token_hashes=(hash_secret(secret),)
    )
    (claimed,) = claims.step(now=now, claim=request).claimed
    started = Started(job=claimed, pid=1, create_time=1.0, node_id="n1", started_at=now)
    (running,) = claims.step(now=now, starts=[started]).running
    assert running is not None
    return running


def _report(live: LiveServer, job_id: str, token: str, body: object) -> httpx.Response:
    return httpx.post(
        f"{live.url}/v1/jobs/{job_id}/report",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_attempt_1_writes_nothing_once_attempt_2_holds_the_job(
    make_services: ServicesFactory, serve: Callable[[Services], LiveServer]
) -> None:
    services = make_services(start=False)
    live = serve(services)
    assert services.dispatcher is not None
    runner, claims = services.dispatcher.runner, services.dispatcher.claims
    job, _ = services.jobs.submit(
        ADMIN, JobSpec(argv=(PY, "-c", "pass"), max_attempts=2, retry_backoff_s=0.0)
    )
    secret1, secret2 = new_token_secret(), new_token_secret()
    first = _claim(services, secret1)
    token1 = job_token(job.id, secret1)
    old = Attempt(job=first, token=token1)
    log = runner.workspace.log_path(job.id, 1)
    log.parent.mkdir(parents=True, exist_ok=True)
    old.scanner = LogScanner(log)
    # attempt 1 reports while it holds the job: applied
    r = _report(live, job.id, token1, {"type": "progress", "percent": 10, "stage": "one"})
    assert r.status_code == 202, r.text
    principal1 = services.auth.authenticate(f"Bearer {token1}")  # before the lease is lost

    # attempt 1 loses its lease (failed as NODE_LOST elsewhere, retried at once) and the
    # job is claimed again: attempt 2 reports its progress
    (result,) = claims.end_attempts(
        [
            AttemptEnd(
                job=first,
                target=JobState.FAILED,
                message="its lease expired without a heartbeat",
                error_type=ErrorType.NODE_LOST.value,
            )
        ],
        services.clock.now(),
    )
    assert result.ended is not None and result.ended.state is JobState.QUEUED
    second = _claim(services, secret2)
    assert (second.attempt, second.lease_epoch) == (2, 2)
    token2 = job_token(job.id, secret2)
    r = _report(live, job.id, token2, {"type": "progress", "percent": 50, "stage": "two"})
    assert r.status_code == 202, r.text
    events_before = [(e.kind, e.message) for e in services.jobs.events(ADMIN, job.id)]

    # attempt 1's last log scan: progress, metrics, a warning, a cell, a note
    lines = [
        format_marker("progress", percent=90, stage="one, late"),
        format_marker("metrics", records_processed=7),
        format_marker("warning", category="late", message="from attempt 1"),
        format_marker("cell", index=3, status="finished"),
        format_marker("note", message="attempt 1 says goodbye"),
    ]
    log.write_text("".join(line + "\n" for line in lines))
    runner.scan(old)
    assert old.scanner.offset == log.stat().st_size  # read, and dropped without an error

    current = services.jobs.get(ADMIN, job.id)
    assert (current.tracking.progress_percent, current.tracking.progress_stage) == (50.0, "two")
    assert current.tracking.records_processed is None
    assert current.tracking.warning_count == 0
    assert [(e.kind, e.message) for e in services.jobs.events(ADMIN, job.id)] == events_before

    # attempt 1's samples and results
    runner.tracking.add_samples(
        [(first, ResourceUsage(cpu_percent=99.0, rss_bytes=1))], services.clock.now()
    )
    with pytest.raises(errors.StaleState):
        runner.artifacts.replace(
            job.tenant_id,
            job.id,
            [
                Artifact(
                    job_id=job.id,
                    path="late.csv",
                    type=OutputType.DATA,
                    format="csv",
                    size=1,
                    sha256="0" * 64,
                    record_count=None,
                    role=None,
                    created_at=datetime.now(UTC),
                )
            ],
            epoch=first.lease_epoch,
        )
    assert runner.tracking.samples("default", job.id) == []
    assert runner.artifacts.list("default", job.id) == []

    # attempt 1's token over HTTP: 401, whether it is refused when read (its hash is no
    # longer the job's) or by the fence (the attempt was superseded after it was read)
    r = _report(live, job.id, token1, {"type": "progress", "percent": 95, "stage": "one"})
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "UNAUTHENTICATED"
    with pytest.raises(errors.Unauthenticated, match="no longer runs"):
        services.tracking.report(principal1, job.id, [{"type": "progress", "percent": 96}])
    current = services.jobs.get(ADMIN, job.id)
    assert (current.tracking.progress_percent, current.tracking.progress_stage) == (50.0, "two")

    # attempt 2's own writes still go through the same fence
    new = Attempt(job=second, token=token2)
    log2 = runner.workspace.log_path(job.id, 2)
    log2.write_text(format_marker("cell", index=1, status="finished") + "\n")
    new.scanner = LogScanner(log2)
    runner.scan(new)
    runner.tracking.add_samples([(second, ResourceUsage(cpu_percent=5.0))], services.clock.now())
    assert [e.kind for e in services.jobs.events(ADMIN, job.id)][-1] == "cell"
    assert [s["cpu_percent"] for s in runner.tracking.samples("default", job.id)] == [5.0]
