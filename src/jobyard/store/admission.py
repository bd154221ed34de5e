"""The rules that keep a queued job from starting, in one place: the claim applies them
(:mod:`jobyard.store.claims`) and the insight explains them (``service/insight.py``),
so the reason a waiting job is given is the rule the claim skips it by.

In order:

- environment full: its environment runs its ``max_concurrent_jobs`` already;
- tenant quota: its tenant runs its ``max_running_jobs`` (else the server's default);
- capacity: its slots do not fit in the free slots;
- fair share (only among jobs that compete for the same slots): a tenant with queued
  jobs and a lower fair-share key (see ``domain/fairshare.py``) goes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from jobyard.clock import to_epoch
from jobyard.domain import fairshare
from jobyard.domain.fairshare import Standing
from jobyard.domain.jobs import Job
from jobyard.store import dialects
from jobyard.store.database import Database
from jobyard.store.fairshare import FairShareStore
from jobyard.store.jobs import _IS_ACTIVE
from jobyard.store.prepared import PreparedStatement
from jobyard.store.tables import environments, jobs, nodes, tenants


class Rule(StrEnum):
    """A rule that keeps a queued job from starting."""

    ENVIRONMENT = "environment"  #: its environment runs its maximum of jobs
    QUOTA = "quota"  #: its tenant runs its quota of jobs
    CAPACITY = "capacity"  #: its slots do not fit in the free ones
    FAIR_SHARE = "fair_share"  #: the slots are taken and other tenants go first


@dataclass(frozen=True, slots=True)
class Room:
    """How many jobs a tenant or an environment runs, of its ``limit`` (None: none)."""

    active: int
    limit: int | None

    @property
    def left(self) -> int | None:
        """Jobs it may still start (None: no limit)."""
        return None if self.limit is None else self.limit - self.active


def tenant_key(tenant_id: str) -> str:
    return f"t:{tenant_id}"


def env_key(environment_id: str) -> str:
    return f"e:{environment_id}"


def held_back(
    left: Mapping[str, int | None],
    *,
    tenant_id: str,
    environment_id: str | None,
    slots: int,
    free_slots: int | None,
) -> Rule | None:
    """The first rule that keeps a job from starting now, or None: ``left`` holds what
    each tenant and environment may still start (see :meth:`Admission.rooms`, keyed by
    :func:`tenant_key` and :func:`env_key`), ``free_slots`` the slots free (None: not
    known, no node is active)."""
    if environment_id is not None:
        room = left.get(env_key(environment_id))
        if room is not None and room <= 0:
            return Rule.ENVIRONMENT
    room = left.get(tenant_key(tenant_id))
    if room is not None and room <= 0:
        return Rule.QUOTA
    if free_slots is not None and slots > free_slots:
        return Rule.CAPACITY
    return None


@dataclass(frozen=True)
class Hold:
    """Why a queued job does not start, with the figures of the rule that holds it."""

    rule: Rule
    active: int  #: jobs running (environment, quota), or slots in use (capacity)
    limit: int  #: jobs allowed (environment, quota), or slots of the active nodes
    environment: str | None = None  #: the environment's name (environment)
    #: the tenants that compete for slots, with their standings (fair share)
    standings: Mapping[str, Standing] | None = None


_TENANT_LIMIT = sa.select(tenants.c.max_running_jobs).where(tenants.c.id == sa.bindparam("b_id"))
_TENANT_LIMITS = sa.select(tenants.c.id, tenants.c.max_running_jobs).where(
    tenants.c.id.in_(sa.bindparam("b_ids", expanding=True))
)
_TENANT_ACTIVE = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(jobs.c.tenant_id == sa.bindparam("b_id"), _IS_ACTIVE)
)
_ENV_LIMIT = sa.select(environments.c.max_concurrent_jobs).where(
    environments.c.id == sa.bindparam("b_id")
)
_ENV_ACTIVE = (
    sa.select(sa.func.count())
    .select_from(jobs)
    .where(jobs.c.environment_id == sa.bindparam("b_id"), _IS_ACTIVE)
)
_USED_SLOTS = sa.select(sa.func.coalesce(sa.func.sum(jobs.c.slots), 0)).where(_IS_ACTIVE)
_TOTAL_SLOTS = sa.select(sa.func.coalesce(sa.func.sum(nodes.c.slots), 0)).where(
    nodes.c.status == "active",
    nodes.c.last_heartbeat_at >= sa.bindparam("b_alive", type_=nodes.c.last_heartbeat_at.type),
)


class Admission:
    """The reads behind the rules: what tenants and environments run of their limits,
    and the slots of the active nodes."""

    def __init__(self, db: Database, fair_share: FairShareStore | None = None) -> None:
        self.db = db
        self.fair_share = fair_share
        # compiled once: a claim reads it for each environment of its candidates
        self._env_limit_locked = PreparedStatement(
            dialects.lock_row(_ENV_LIMIT, db.dialect), db.engine.dialect
        )
        self._tenant_limit_locked = dialects.lock_row(_TENANT_LIMIT, db.dialect)

    def rooms(
        self,
        conn: sa.Connection,
        tenant_ids: Iterable[str],
        environment_ids: Iterable[str],
        default_max_running: int | None,
        *,
        lock: bool,
        quotas: Mapping[str, int | None] | None = None,
    ) -> dict[str, Room]:
        """What each tenant and environment runs of its limit (keyed by
        :func:`tenant_key` and :func:`env_key`). With ``lock`` (a claim) their rows are
        locked before their jobs are counted (PostgreSQL; SQLite's write transaction
        holds the whole database), so two claimers cannot both take the last place;
        always in one order, tenants then environments, each by id, so no two claimers
        wait for each other in a cycle. ``quotas``: the tenants' own
        ``max_running_jobs`` as read already in this transaction (else read here)."""
        room: dict[str, Room] = {}
        ids = sorted(set(tenant_ids))
        # the quotas of all tenants in one read (a claim's come with its candidates):
        # most have none, and one query per tenant made a claim among 100 tenants cost
        # 50 queries
        own = quotas if quotas is not None else self._tenant_quotas(conn, ids)
        for tenant in ids:
            if own.get(tenant) is None and default_max_running is None:
                room[tenant_key(tenant)] = Room(0, None)  # unlimited: nothing to count
                continue
            limit = own.get(tenant)
            if lock:  # read again under the row's lock
                limit = conn.execute(self._tenant_limit_locked, {"b_id": tenant}).scalar()
            limit = limit if limit is not None else default_max_running
            if limit is None:
                room[tenant_key(tenant)] = Room(0, None)
                continue
            active = int(conn.execute(_TENANT_ACTIVE, {"b_id": tenant}).scalar_one())
            room[tenant_key(tenant)] = Room(active, int(limit))
        for env_id in sorted(set(environment_ids)):
            if lock:
                found = self._env_limit_locked.rows(conn, {"b_id": env_id})
                limit = found[0][0] if found else None
            else:
                limit = conn.execute(_ENV_LIMIT, {"b_id": env_id}).scalar_one_or_none()
            if limit is None:
                room[env_key(env_id)] = Room(0, None)
                continue
            active = int(conn.execute(_ENV_ACTIVE, {"b_id": env_id}).scalar_one())
            room[env_key(env_id)] = Room(active, int(limit))
        return room

    @staticmethod
    def _tenant_quotas(conn: sa.Connection, ids: list[str]) -> Mapping[str, int | None]:
        """The tenants' own ``max_running_jobs`` (None: none), by id."""
        return dict(conn.execute(_TENANT_LIMITS, {"b_ids": ids}).all()) if ids else {}

    def slots(self, alive_since: datetime) -> tuple[int, int]:
        """Slots taken by active jobs, and the slots of nodes that heartbeat since then."""
        with self.db.read() as conn:
            used = conn.execute(_USED_SLOTS).scalar_one()
            total = conn.execute(_TOTAL_SLOTS, {"b_alive": alive_since}).scalar_one()
        return int(used), int(total)

    def hold(
        self,
        job: Job,
        *,
        default_max_running: int | None,
        used_slots: int,
        total_slots: int,
        now: datetime,
    ) -> Hold | None:
        """The rule that keeps the queued ``job`` from starting (see :func:`held_back`),
        with its figures; None when none does (it waits for its turn, or starts).
        ``used_slots`` and ``total_slots``: see :meth:`slots` (no capacity rule while no
        node is active: nothing to compare with)."""
        spec = job.spec
        envs = [spec.environment_id] if spec.environment_id else []
        with self.db.read() as conn:
            rooms = self.rooms(conn, [job.tenant_id], envs, default_max_running, lock=False)
            left = {k: r.left for k, r in rooms.items()}
            free = max(0, total_slots - used_slots) if total_slots else None
            rule = held_back(
                left,
                tenant_id=job.tenant_id,
                environment_id=spec.environment_id,
                slots=spec.slots,
                free_slots=free,
            )
            if rule is Rule.ENVIRONMENT and spec.environment_id:
                room = rooms[env_key(spec.environment_id)]
                name = conn.execute(
                    sa.select(environments.c.name).where(environments.c.id == spec.environment_id)
                ).scalar_one()
                return Hold(rule, room.active, int(room.limit or 0), environment=str(name))
            if rule is Rule.QUOTA:
                room = rooms[tenant_key(job.tenant_id)]
                return Hold(rule, room.active, int(room.limit or 0))
            if rule is not Rule.CAPACITY:
                return None
            if self.fair_share is not None:
                # the standings the claim orders tenants by (``Snapshot.key``)
                snap = self.fair_share.read(conn, to_epoch(now))
                competing = {t: snap.standing(t) for t in snap.queued | {job.tenant_id}}
                if fairshare.over_share(job.tenant_id, competing):
                    return Hold(Rule.FAIR_SHARE, used_slots, total_slots, standings=competing)
        return Hold(Rule.CAPACITY, used_slots, total_slots)
