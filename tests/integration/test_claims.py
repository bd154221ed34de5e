"""ClaimStore: several claims in one transaction within slots and quotas, the running
mark and the end in one step, fenced ends, on both databases."""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobyard import errors
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.store.claims import CLAIM_SCAN_FAIR, AttemptEnd, ClaimRequest, ClaimStore, Started
from jobyard.store.tables import environments
from jobyard.wiring import Services
from tests.conftest import ServicesFactory

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def _request(n: int, max_slots: int | None = None) -> ClaimRequest:
    return ClaimRequest(
        node_id="n1",
        lease_ttl_s=30,
        max_slots=n if max_slots is None else max_slots,
        token_hashes=tuple(f"h{i}" for i in range(n)),
    )


def test_claims_several_jobs_in_queue_order_within_the_free_slots(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False)
    big = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass"), slots=2))[0]
    small = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0] for _ in range(3)]
    claims = ClaimStore(services.db)
    step = claims.step(now=services.clock.now(), claim=_request(3, max_slots=2))
    # the 2-slot job is first in the queue and fills both slots: nothing else fits
    assert [j.id for j in step.claimed] == [big.id]
    step = claims.step(now=services.clock.now(), claim=_request(3))
    assert [j.id for j in step.claimed] == [s.id for s in small]
    for job in step.claimed:
        assert (job.state, job.attempt, job.lease_epoch, job.lease_owner) == (
            JobState.STARTING,
            1,
            1,
            "n1",
        )
        events = services.jobs.events(ADMIN, job.id)
        assert [(e.from_state, e.to_state) for e in events] == [
            (None, "queued"),
            ("queued", "starting"),
        ]
        assert events[-1].data == {"node_id": "n1", "attempt": 1}


def test_claims_skip_a_tenant_at_its_quota(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    services.tenancy.store.set_quotas("default", {"max_running_jobs": 1})
    ids = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0].id for _ in range(3)]
    claims = ClaimStore(services.db)
    first = claims.step(now=services.clock.now(), claim=_request(3)).claimed
    assert [j.id for j in first] == ids[:1]
    assert claims.step(now=services.clock.now(), claim=_request(3)).claimed == []


def test_running_mark_and_end_in_one_step(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    job = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0]
    claims = ClaimStore(services.db)
    now = services.clock.now()
    claimed = claims.step(now=now, claim=_request(1)).claimed[0]
    began = now - timedelta(seconds=1)  # the process started before the step marks it
    running = claimed.evolve(state=JobState.RUNNING, started_at=began)
    usage = ResourceUsage(cpu_percent=1.0, rss_bytes=10, peak_rss_bytes=20, cpu_time_s=0.5)
    end = AttemptEnd(
        job=running, target=JobState.SUCCEEDED, message="done", exit_code=0, usage=usage
    )
    step = claims.step(
        now=now,
        starts=[Started(job=claimed, pid=4242, create_time=1.0, node_id="n1", started_at=began)],
        ends=[end],
    )
    assert step.running[0] is not None and step.running[0].pid == 4242
    assert step.ended[0].ended is not None
    done = services.jobs.get(ADMIN, job.id)
    assert (done.state, done.exit_code, done.lease_owner, done.pid) == (
        JobState.SUCCEEDED,
        0,
        None,
        4242,
    )
    assert done.usage.peak_rss_bytes == 20 and done.usage.cpu_time_s == 0.5
    assert done.started_at == began  # the process's start, not the time of the mark
    assert [e.to_state for e in services.jobs.events(ADMIN, job.id)] == [
        "queued",
        "starting",
        "running",
        "succeeded",
    ]
    attempts = services.tracking.attempts(ADMIN, job.id)
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [(1, "succeeded", 0)]


def test_a_start_and_end_of_a_changed_job_write_neither(make_services: ServicesFactory) -> None:
    """The running mark and the end of one attempt in one step are one fenced write: a
    job cancelled meanwhile gets neither (nor their events), and the end says how the
    job is now."""
    services = make_services(start=False)
    job = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0]
    claims = ClaimStore(services.db)
    now = services.clock.now()
    claimed = claims.step(now=now, claim=_request(1)).claimed[0]
    services.jobs.cancel(ADMIN, job.id)
    cancelling = services.jobs.get(ADMIN, job.id)
    running = claimed.evolve(state=JobState.RUNNING, started_at=now)
    step = claims.step(
        now=now,
        starts=[Started(job=claimed, pid=4242, create_time=1.0, node_id="n1", started_at=now)],
        ends=[AttemptEnd(job=running, target=JobState.SUCCEEDED, message="done", exit_code=0)],
    )
    assert step.running == [None]
    assert step.ended[0].ended is None and step.ended[0].current == cancelling
    assert services.jobs.get(ADMIN, job.id) == cancelling
    assert [e.to_state for e in services.jobs.events(ADMIN, job.id)] == [
        "queued",
        "starting",
        cancelling.state.value,
    ]
    assert services.tracking.attempts(ADMIN, job.id) == []


def test_a_start_and_plain_end_in_one_step_leave_the_row_as_two_steps_would(
    make_services: ServicesFactory,
) -> None:
    """Marked running and ended in one step (no usage figures), or in two: the same
    row, events and attempt record, times and ids aside."""
    services = make_services(start=False)
    ids = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0].id for _ in range(2)]
    claims = ClaimStore(services.db)
    now = services.clock.now()
    for together in (True, False):
        claimed = claims.step(now=now, claim=_request(1)).claimed[0]
        start = Started(job=claimed, pid=7, create_time=2.0, node_id="n1", started_at=now)
        running = claimed.evolve(state=JobState.RUNNING, started_at=now)
        end = AttemptEnd(job=running, target=JobState.FAILED, message="exit 3", exit_code=3)
        if together:
            step = claims.step(now=now, starts=[start], ends=[end])
        else:
            claims.step(now=now, starts=[start])
            step = claims.step(now=now, ends=[end])
        assert step.ended[0].ended is not None
    rows = [services.jobs.get(ADMIN, i) for i in ids]
    same = ("state", "pid", "pid_create_time", "exit_code", "message", "lease_owner", "attempt")
    assert [tuple(getattr(r, f) for f in same) for r in rows] == [
        (JobState.FAILED, 7, 2.0, 3, "exit 3", None, 1)
    ] * 2
    for i in ids:
        events = services.jobs.events(ADMIN, i)
        assert [(e.from_state, e.to_state, e.message) for e in events][2:] == [
            ("starting", "running", "Job is running on node n1 (pid 7)."),
            ("running", "failed", "exit 3"),
        ]
        attempts = services.tracking.attempts(ADMIN, i)
        assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [(1, "failed", 3)]


def test_an_end_is_fenced_by_state_and_lease_epoch(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    job = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0]
    claims = ClaimStore(services.db)
    now = services.clock.now()
    claimed = claims.step(now=now, claim=_request(1)).claimed[0]
    running = claims.mark_running([Started(claimed, 1, 1.0, "n1", now)], now)[0]
    assert running is not None
    services.jobs.store.transition(running, JobState.CANCELLING, now=now, message="cancel")
    old_epoch = running.evolve(state=JobState.CANCELLING, lease_epoch=0)
    ends = [
        AttemptEnd(job=running, target=JobState.SUCCEEDED, message="done", exit_code=0),
        AttemptEnd(job=old_epoch, target=JobState.CANCELLED, message="cancelled"),
    ]
    stale, fenced = claims.end_attempts(ends, now)
    assert stale.ended is None and stale.current is not None
    assert stale.current.state is JobState.CANCELLING
    assert fenced.ended is None
    cancelled = AttemptEnd(job=stale.current, target=JobState.CANCELLED, message="cancelled")
    assert claims.end_attempts([cancelled], now)[0].ended is not None
    assert services.jobs.get(ADMIN, job.id).state is JobState.CANCELLED
    assert services.tracking.attempts(ADMIN, job.id)[0]["state"] == "cancelled"


def test_a_step_writes_its_events_in_order_around_a_retry(make_services: ServicesFactory) -> None:
    """The running mark's event precedes the events of an end that re-queues the job,
    and the claim of the step comes after both."""
    services = make_services(start=False)
    job = services.jobs.submit(
        ADMIN, JobSpec(argv=(PY, "-c", "pass"), max_attempts=2, retry_backoff_s=60.0)
    )[0]
    other = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0]
    claims = ClaimStore(services.db)
    now = services.clock.now()
    claimed = claims.step(now=now, claim=_request(1)).claimed[0]
    running = claimed.evolve(state=JobState.RUNNING, started_at=now)
    end = AttemptEnd(job=running, target=JobState.FAILED, message="failed", exit_code=1)
    step = claims.step(
        now=now,
        starts=[Started(job=claimed, pid=4242, create_time=1.0, node_id="n1", started_at=now)],
        ends=[end],
        claim=_request(1),
    )
    assert step.ended[0].ended is not None
    assert [j.id for j in step.claimed] == [other.id]
    states = [(e.from_state, e.to_state) for e in services.jobs.events(ADMIN, job.id)]
    assert states[:3] == [(None, "queued"), ("queued", "starting"), ("starting", "running")]
    assert states[3][0] == "running" and states[-1][1] == "queued"
    assert [e.to_state for e in services.jobs.events(ADMIN, other.id)] == ["queued", "starting"]


def test_candidates_are_read_along_the_queue_index(make_services: ServicesFactory) -> None:
    """The claim reads queued jobs in order from the partial queue index: it never sorts
    the whole queue (SQLite's plan; PostgreSQL's depends on its statistics)."""
    services = make_services(start=False)
    claims = ClaimStore(services.db)
    ids = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0].id for _ in range(3)]
    assert [j.id for j in claims.step(now=services.clock.now(), claim=_request(3)).claimed] == ids
    if services.db.dialect != "sqlite":
        return
    with services.db.read() as conn:
        sql = claims._candidates.sql
        plan = " ".join(
            str(row[-1])
            for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (1, "", 50)).all()
        )
    assert "ix_jobs_queue" in plan and "TEMP B-TREE" not in plan


def test_a_claimed_job_is_the_row_as_read_back(make_services: ServicesFactory) -> None:
    """The claim's RETURNING row (read on the driver's cursor) comes out as SQLAlchemy
    reads the row: aware timestamps, JSON, booleans, every column."""
    services = make_services(start=False)
    spec = JobSpec(
        argv=(PY, "-c", "pass"),
        env={"A": "1"},
        parameters={"n": [1, 2]},
        metadata={"k": "v"},
        timeout_s=5.0,
        retry_on=("timeout",),
        max_attempts=2,
    )
    job = services.jobs.submit(ADMIN, spec)[0]
    claimed = ClaimStore(services.db).step(now=services.clock.now(), claim=_request(1)).claimed
    assert claimed == [services.jobs.store.get_unscoped(job.id)]
    assert claimed[0].created_at.tzinfo is not None
    assert claimed[0].spec.parameters == {"n": [1, 2]}


def _environment(services: Services, max_concurrent_jobs: int) -> str:
    env_id = str(uuid.uuid4())
    now = services.clock.now()
    with services.db.write() as conn:
        conn.execute(
            environments.insert().values(
                id=env_id,
                tenant_id="default",
                name="full",
                env_vars={},
                pip_requirements=[],
                files=[],
                max_concurrent_jobs=max_concurrent_jobs,
                created_at=now,
                updated_at=now,
            )
        )
    return env_id


def test_a_claim_looks_past_more_held_back_jobs_than_its_first_read(
    make_services: ServicesFactory,
) -> None:
    """A claim reads few queued jobs when none can be held back; jobs of a full
    environment at the head of the queue make it read further (``CLAIM_SCAN``)."""
    services = make_services(start=False)
    env_id = _environment(services, max_concurrent_jobs=1)
    now = services.clock.now()

    def queue(environment_id: str | None) -> str:
        spec = JobSpec(argv=(PY, "-c", "pass"), environment_id=environment_id)
        return services.jobs.store.insert(
            tenant_id="default",
            spec=spec,
            state=JobState.QUEUED,
            sort_key=0.0,
            now=now,
            request_hash=None,
            message="queued",
        )[0].id

    in_env = [queue(env_id) for _ in range(CLAIM_SCAN_FAIR + 3)]
    plain = queue(None)
    claims = ClaimStore(services.db)
    assert [j.id for j in claims.step(now=now, claim=_request(1)).claimed] == in_env[:1]
    # the environment runs its one job: the next claim skips its 10 queued jobs
    assert [j.id for j in claims.step(now=now, claim=_request(1)).claimed] == [plain]


def test_a_quota_set_between_claims_holds_at_the_next(make_services: ServicesFactory) -> None:
    """The claim reads the tenant's quota with its candidates, in each step."""
    services = make_services(start=False)
    ids = [services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0].id for _ in range(3)]
    claims = ClaimStore(services.db)
    assert [j.id for j in claims.step(now=services.clock.now(), claim=_request(1)).claimed] == [
        ids[0]
    ]
    services.tenancy.store.set_quotas("default", {"max_running_jobs": 1})
    assert claims.step(now=services.clock.now(), claim=_request(2)).claimed == []
    services.tenancy.store.set_quotas("default", {"max_running_jobs": 2})
    assert [j.id for j in claims.step(now=services.clock.now(), claim=_request(2)).claimed] == [
        ids[1]
    ]


def test_a_step_after_its_connection_broke_runs_on_a_new_one(
    make_services: ServicesFactory,
) -> None:
    """The claim loop's steps run on a connection the database keeps for them; one that
    broke (closed under it, as by a restarted database server) is replaced after the
    step that found it broken."""
    services = make_services(start=False)
    if services.db.dialect != "sqlite":
        pytest.skip("PostgreSQL's steps take a pooled connection, pinged at checkout")
    job = services.jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))[0]
    claims = ClaimStore(services.db)
    with services.db.held_write() as conn:
        raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.close()

    with pytest.raises((errors.StoreUnavailable, sa.exc.DBAPIError)):
        claims.step(now=services.clock.now(), claim=_request(1))
    step = claims.step(now=services.clock.now(), claim=_request(1))
    assert [j.id for j in step.claimed] == [job.id]
