"""Folding fair-share rows (issue 10): the usage is kept per tenant *and node*, and nodes
come and go (a restart with a new id, autoscaled hosts), so rows of nodes that no longer
run a tenant's jobs are folded, by the upkeep, into one row per tenant; usage that has
decayed to nothing is dropped. On both databases, through the real ``ClaimStore`` steps
(claims and ends written as the dispatcher writes them) and the services' upkeep, with
simulated time: every tenant's usage is the same before and after, the rows are fewer,
a node still running a tenant's job keeps its row, and a node that claims again for a
folded tenant starts a row of its own."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from jobyard.clock import ManualClock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.store.claims import AttemptEnd, ClaimRequest, ClaimStore, Started
from jobyard.store.fairshare import FOLD_AFTER_S, FOLDED_NODE
from jobyard.store.tables import tenant_usage
from jobyard.wiring import Services
from tests.conftest import ServicesFactory

PY = sys.executable
SUPER = Principal(tenant_id="default", key_id="k", key_name="root", role=Role.SUPERUSER)


def _as(tenant: str) -> Principal:
    return Principal(tenant_id=tenant, key_id=f"k-{tenant}", key_name=tenant, role=Role.ADMIN)


def _claim(services: Services, node: str, now: datetime, n: int) -> list[Job]:
    request = ClaimRequest(
        node_id=node,
        lease_ttl_s=10**6,
        max_slots=n,
        token_hashes=tuple(f"{node}-{now.timestamp()}-{i}" for i in range(n)),
    )
    claimed = ClaimStore(services.db).step(now=now, starts=[], ends=[], claim=request).claimed
    starts = [Started(job=j, pid=1, create_time=0.0, node_id=node, started_at=now) for j in claimed]
    ClaimStore(services.db).step(now=now, starts=starts, ends=[], claim=None)
    return [j.evolve(state=JobState.RUNNING, started_at=now) for j in claimed]


def _end(services: Services, now: datetime, jobs: list[Job]) -> None:
    ends = [AttemptEnd(job=j, target=JobState.SUCCEEDED, message="done") for j in jobs]
    ClaimStore(services.db).step(now=now, starts=[], ends=ends, claim=None)


def _rows(services: Services) -> dict[tuple[str, str], int]:
    with services.db.read() as conn:
        rows = conn.execute(
            sa.select(
                tenant_usage.c.tenant_id, tenant_usage.c.node_id, tenant_usage.c.running_slots
            )
        ).all()
    return {(t, n): int(r) for t, n, r in rows}


def _usage(services: Services) -> dict[str, float]:
    return {r["tenant_id"]: r["usage_s"] for r in services.tenancy.fair_share(SUPER)}


def test_idle_rows_of_nodes_fold_into_one_per_tenant_and_the_usage_stays(
    make_services: ServicesFactory,
) -> None:
    clock = ManualClock()
    services = make_services(start=False, clock=clock)
    services.tenancy.create_tenant(SUPER, "b", "B")
    for tenant in ("default", "b"):
        for _ in range(8):
            services.jobs.submit(_as(tenant), JobSpec(argv=(PY, "-c", "pass")))
    # four nodes, each runs jobs of both tenants for a while, then they end
    for i, node in enumerate(("n1", "n2", "n3", "n4")):
        clock.advance(60)
        held = _claim(services, node, clock.now(), 3 + i % 2)
        clock.advance(300)
        _end(services, clock.now(), held)
    assert {t for t, _ in _rows(services)} == {"default", "b"}
    # a fifth node still runs a job of "default" when the others have long been idle
    clock.advance(FOLD_AFTER_S + 1)
    (running,) = _claim(services, "n5", clock.now(), 1)
    before_rows = _rows(services)
    before = _usage(services)
    assert len(before_rows) >= 7 and before["default"] > 0 and before["b"] > 0

    services.upkeep.tick()

    rows = _rows(services)
    assert rows == {
        ("default", FOLDED_NODE): 0,
        ("b", FOLDED_NODE): 0,
        (running.tenant_id, "n5"): 1,
    }, rows
    after = _usage(services)
    assert after == pytest.approx(before, rel=1e-9)
    assert services.upkeep.fair_share is not None
    assert services.upkeep.fair_share.fold(clock.now().timestamp()) == 0  # nothing left to fold

    # the folded tenant claims again on an old node: a new row of its own, the usage adds up
    clock.advance(10)
    held = _claim(services, "n1", clock.now(), 2)
    assert held and all(_rows(services)[(j.tenant_id, "n1")] >= 1 for j in held)
    assert (held[0].tenant_id, FOLDED_NODE) in _rows(services)  # beside its folded row
    clock.advance(100)
    _end(services, clock.now(), [*held, running])

    # long after, the usage has decayed to nothing: the rows go altogether
    clock.advance(timedelta(days=30).total_seconds())
    services.upkeep.tick()
    assert _rows(services) == {}
    assert all(u == 0 for u in _usage(services).values())
