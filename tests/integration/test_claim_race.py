"""Two claimers racing, each with its own connections (two replicas), released together
by a barrier, many rounds: the tenant's ``max_running_jobs`` holds and no deadlock
surfaces while they lock environments of jobs queued in alternating order. On
PostgreSQL the claims truly overlap; on SQLite the write lock serialises them."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import datetime

import sqlalchemy as sa

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import ACTIVE
from jobyard.store.claims import ClaimRequest, ClaimStore
from jobyard.store.database import Database
from jobyard.store.tables import environments, jobs
from tests.conftest import ServicesFactory

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)
ROUNDS = 25
QUOTA = 3
TOKENS = 3  #: jobs each claimer may take per claim (room for the whole quota)
#: queue order of the environments of each round's jobs: a claimer that skips the rows
#: the other one locked meets them in another order than the other one does
PATTERN = ["e1", "e2", "e2", "e1", "e1", "e2", "e3", "e1", "e3", "e2", "e1", "e3"]


def _environment(db: Database, name: str, now: datetime) -> str:
    env_id = str(uuid.uuid4())
    with db.write() as conn:
        conn.execute(
            environments.insert().values(
                id=env_id,
                tenant_id="default",
                name=name,
                env_vars={},
                pip_requirements=[],
                files=[],
                max_concurrent_jobs=100,
                created_at=now,
                updated_at=now,
            )
        )
    return env_id


def _active(db: Database) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(jobs)
        .where(jobs.c.state.in_([s.value for s in ACTIVE]))
    )
    with db.read() as conn:
        return int(conn.execute(stmt).scalar_one())


def test_the_running_quota_holds_under_concurrent_claims(
    make_services: ServicesFactory, db_url: str
) -> None:
    services = make_services(start=False)
    services.tenancy.store.set_quotas("default", {"max_running_jobs": QUOTA})
    now = services.clock.now()
    envs = {name: _environment(services.db, name, now) for name in sorted(set(PATTERN))}
    replicas = [Database(db_url), Database(db_url)]
    stores = [ClaimStore(db) for db in replicas]
    barrier = threading.Barrier(2)
    over: list[tuple[int, int]] = []
    failures: list[BaseException] = []
    try:
        for round_ in range(ROUNDS):
            with services.db.write() as conn:  # end the previous round's claims
                conn.execute(
                    jobs.update()
                    .where(jobs.c.state.in_([s.value for s in ACTIVE]))
                    .values(state="cancelled", lease_owner=None, lease_expires_at=None)
                )
            for name in PATTERN:
                services.jobs.submit(
                    ADMIN, JobSpec(argv=(PY, "-c", "pass"), environment_id=envs[name])
                )
            claimed: list[int] = [0, 0]

            def claim(i: int, round_: int = round_, claimed: list[int] = claimed) -> None:
                request = ClaimRequest(
                    node_id=f"node-{i}",
                    lease_ttl_s=60,
                    max_slots=TOKENS,
                    token_hashes=tuple(f"r{round_}-n{i}-{t}" for t in range(TOKENS)),
                )
                try:
                    barrier.wait(10)
                    step = stores[i].step(now=services.clock.now(), claim=request)
                    claimed[i] = len(step.claimed)
                except BaseException as e:
                    failures.append(e)

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            active = _active(services.db)
            assert sum(claimed) == active
            if active > QUOTA:
                over.append((round_, active))
    finally:
        for db in replicas:
            db.dispose()
    # no deadlock (nor any other error), never more running jobs than the quota
    assert not failures and not over, (
        f"errors: {failures}; (round, running jobs) over the quota of {QUOTA}: {over}"
    )
