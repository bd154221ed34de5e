"""Fair share between tenants (issue 10 item 3), on both databases.

* Two tenants flood the queue; two nodes claim through the real ``ClaimStore`` steps
  (claims, running marks and ends written to the database, the usage rows with them)
  while time is simulated: each step passes a chosen ``now``, so the split does not
  depend on this machine's load. The slot time each tenant got is within 10 % of its
  weight's share, with jobs of different lengths (slot time, not job counts, is shared).
* A tenant alone takes every free slot, whatever the weights of idle tenants.
* Through the real server, dispatcher and executor: a superuser sets a weight with the
  CLI (validation through the API and the SDK), the waiting job of the tenant over its
  share says so in ``pending_reason``, and the other tenant's jobs start first.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from jobyard import Client
from jobyard.cli.main import app
from jobyard.clock import ManualClock
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.states import JobState
from jobyard.store.claims import AttemptEnd, ClaimRequest, ClaimStore, Started
from jobyard.wiring import Services
from tests.conftest import GATES, LiveServer, ServicesFactory, wait_for

PY = sys.executable
SUPER = Principal(tenant_id="default", key_id="k", key_name="root", role=Role.SUPERUSER)


def _as(tenant: str) -> Principal:
    return Principal(tenant_id=tenant, key_id=f"k-{tenant}", key_name=tenant, role=Role.ADMIN)


def _flood(services: Services, tenant: str, n: int) -> None:
    for _ in range(n):
        services.jobs.submit(_as(tenant), JobSpec(argv=(PY, "-c", "pass")))


class Node:
    """One simulated node: its own ClaimStore (own usage rows, own cached copy), slots,
    and the jobs it holds with the simulated time each ends."""

    def __init__(self, services: Services, node_id: str, slots: int) -> None:
        self.claims = ClaimStore(services.db)
        self.node_id = node_id
        self.slots = slots
        self.held: list[tuple[datetime, Job]] = []  # (ends at, job as this node knows it)
        self.unmarked: list[Job] = []  # claimed, to be marked running by the next step

    def step(self, now: datetime, length: dict[str, float]) -> list[Job]:
        starts = [
            Started(job=j, pid=1, create_time=0.0, node_id=self.node_id, started_at=now)
            for j in self.unmarked
        ]
        running = {s.job.id: s.job.evolve(state=JobState.RUNNING, started_at=now) for s in starts}
        ends = []
        keep = []
        for ends_at, job in self.held:
            job = running.get(job.id, job)
            if ends_at <= now:
                ends.append(AttemptEnd(job=job, target=JobState.SUCCEEDED, message="done"))
            else:
                keep.append((ends_at, job))
        free = self.slots - len(keep)
        request = ClaimRequest(
            node_id=self.node_id,
            lease_ttl_s=3600,
            max_slots=free,
            token_hashes=tuple(f"{self.node_id}-{now.timestamp()}-{i}" for i in range(free)),
        )
        step = self.claims.step(now=now, starts=starts, ends=ends, claim=request)
        assert all(r.ended is not None for r in step.ended)
        self.held = keep + [(now + timedelta(seconds=length[j.tenant_id]), j) for j in step.claimed]
        self.unmarked = list(step.claimed)
        return step.claimed


def test_two_tenants_flooding_the_queue_share_the_slots_by_weight(
    make_services: ServicesFactory,
) -> None:
    clock = ManualClock()  # the simulated time, also the time the usage view is read at
    services = make_services(start=False, clock=clock)
    services.tenancy.create_tenant(SUPER, "b", "B")
    services.tenancy.update_tenant(SUPER, "default", limits={"fair_share_weight": 2})
    _flood(services, "default", 80)  # submitted first: all of "b"'s jobs are behind them
    _flood(services, "b", 80)
    # "default" (weight 2) runs 10 s jobs, "b" (weight 1) 5 s jobs: the slot time is
    # shared 2:1, so "b" starts about as many jobs as "default"
    length = {"default": 10.0, "b": 5.0}
    nodes = [Node(services, "n1", 3), Node(services, "n2", 3)]
    slot_s: defaultdict[str, float] = defaultdict(float)
    started: Counter[str] = Counter()
    for _ in range(100):  # 100 simulated seconds, 6 slots: 600 slot-seconds
        clock.advance(1)
        now = clock.now()
        for node in nodes:
            for job in node.step(now, length):
                slot_s[job.tenant_id] += length[job.tenant_id]
                started[job.tenant_id] += 1
    assert started["default"] < 80 and started["b"] < 80  # both still had a backlog
    share = slot_s["default"] / (slot_s["default"] + slot_s["b"])
    print(f"fair share split: {share:.3f} (weight share 0.667), {slot_s}, {started}")
    assert abs(share - 2 / 3) <= 0.1 * 2 / 3, (share, slot_s, started)
    assert abs((1 - share) - 1 / 3) <= 0.1 * 1 / 3, (share, slot_s, started)
    # the per-node usage rows add up to what the nodes hold now
    view = {r["tenant_id"]: r for r in services.tenancy.fair_share(SUPER)}
    held = Counter(j.tenant_id for node in nodes for _, j in node.held)
    assert {t: view[t]["running_slots"] for t in ("default", "b")} == {
        "default": held["default"],
        "b": held["b"],
    }
    assert (view["default"]["weight"], view["b"]["weight"]) == (2, 1)
    # the decayed usage, read from the per-node rows at the end, is split about the same
    assert view["default"]["usage_part"] == pytest.approx(2 / 3, abs=0.1)
    assert view["default"]["usage_part"] + view["b"]["usage_part"] == pytest.approx(1.0)


def test_a_tenant_alone_takes_every_free_slot(make_services: ServicesFactory) -> None:
    services = make_services(start=False)
    services.tenancy.create_tenant(SUPER, "b", "B")
    services.tenancy.update_tenant(SUPER, "b", limits={"fair_share_weight": 100})
    _flood(services, "default", 12)
    node = Node(services, "n1", 4)
    now = services.clock.now()
    length = {"default": 10.0}
    assert len(node.step(now, length)) == 4  # "b" is idle: nothing is kept for it
    now += timedelta(seconds=10)
    # far over its share (it used everything), still alone: it takes every slot again
    assert [j.tenant_id for j in node.step(now, length)] == ["default"] * 4


def _cli(live: LiveServer, key: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, list(args), env={"JOBYARD_URL": live.url, "JOBYARD_API_KEY": key}
    )
    return result.exit_code, result.output


def test_weight_by_cli_pending_reason_and_order_through_the_server(
    live: LiveServer, tmp_path: Path
) -> None:
    sup = live.admin_key
    gate = tmp_path / GATES / "go"
    wait = f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    with Client(live.url, sup) as root:
        root.create_tenant("b", "B")
        b_key = root.create_key("b-admin", "admin", tenant="b")["secret"]
        code, out = _cli(live, sup, "tenants", "update", "b", "--weight", "3")
        assert code == 0 and "fair-share weight 3" in out, out
        assert {t["id"]: t["fair_share_weight"] for t in root.tenants()} == {
            "default": 1,
            "b": 3,
        }
        assert root.set_fair_share_weight("default", 2)["fair_share_weight"] == 2
        # "default" fills both slots and queues two more
        mine = [root.submit([PY, "-c", wait]) for _ in range(4)]
        wait_for(lambda: sum(root.get(j.id).status == "running" for j in mine) == 2)
        with Client(live.url, b_key) as b:
            theirs = [b.submit([PY, "-c", wait]) for _ in range(2)]
            reason = b.get(theirs[0].id).pending_reason or ""
            assert reason.startswith("capacity: all 2 slots"), reason
        waiting = [j for j in mine if root.get(j.id).status == "queued"]
        assert len(waiting) == 2
        reason = root.get(waiting[0].id).pending_reason or ""
        assert reason.startswith("fair share: tenant default is over its share"), reason
        view = {r["tenant_id"]: r for r in root.fair_share()}
        assert view["default"]["running_slots"] == 2 and view["default"]["queued"]
        assert (view["b"]["weight"], view["b"]["running_slots"], view["b"]["factor"]) == (3, 0, 1)
        gate.touch()
        ended = {j.id: root.wait(j.id, timeout=60) for j in mine}
        with Client(live.url, b_key) as b:
            ended.update({j.id: b.wait(j.id, timeout=60) for j in theirs})
    assert all(j.status == "succeeded" for j in ended.values())
    # "b" queued last, but "default" was over its share: "b"'s jobs started first
    b_started = max(ended[j.id].started_at for j in theirs)  # type: ignore[type-var]
    assert all(ended[j.id].started_at >= b_started for j in waiting)  # type: ignore[operator]


def test_weight_validation_is_a_clear_4xx(live: LiveServer) -> None:
    def patch(body: object, tenant: str = "default", key: str | None = None) -> httpx.Response:
        return httpx.patch(
            f"{live.url}/v1/tenants/{tenant}",
            json=body,
            headers={"Authorization": f"Bearer {key or live.admin_key}"},
        )

    for bad in (0, -1, 1_000_001, "heavy", 1.5, True):
        r = patch({"fair_share_weight": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "fair_share_weight" in r.text
    r = patch({"fair_share_weight": 2}, tenant="nobody")
    assert r.status_code == 404 and "nobody" in r.json()["message"]
    with Client(live.url, live.admin_key) as root:
        admin = root.create_key("plain-admin", "admin")["secret"]
    r = patch({"fair_share_weight": 2}, key=admin)
    assert r.status_code == 403
    r = httpx.get(f"{live.url}/v1/fair-share", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 403
    code, out = _cli(live, live.admin_key, "tenants", "update", "default", "--weight", "0")
    assert code != 0 and "fair_share_weight" in out, out
    r = patch({"fair_share_weight": 5, "max_running_jobs": 7})
    assert r.status_code == 200, r.text
    assert (r.json()["fair_share_weight"], r.json()["max_running_jobs"]) == (5, 7)
