"""Figures for the system status and /metrics: counts, waits, durations, node usage.

Every query takes a *scope*: a tenant id, whose figures never include other tenants'
jobs, or :data:`ALL_TENANTS` for operators' figures (``/metrics``). Nodes are shared
infrastructure: every tenant sees all of them and the slots they have in use.
Durations are computed in SQL in seconds (:class:`EpochSeconds` compiles per dialect).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa

from jobyard.domain import states
from jobyard.domain.states import JobState
from jobyard.store.database import Database
from jobyard.store.dialects import EpochSeconds
from jobyard.store.tables import jobs, nodes


class Everyone(Enum):
    """The scope of operators' figures: every tenant at once (never a tenant's answer)."""

    TENANTS = "all tenants"


ALL_TENANTS = Everyone.TENANTS
Scope = str | Everyone

_ACTIVE = sorted(s.value for s in states.ACTIVE)
_TERMINAL = sorted(s.value for s in states.TERMINAL)


def _seconds(start: Any, end: Any) -> sa.ColumnElement[float]:
    return EpochSeconds(end) - EpochSeconds(start)


RUN_S = _seconds(jobs.c.started_at, jobs.c.ended_at)  #: running time of an ended job
WAIT_S = _seconds(jobs.c.queued_at, jobs.c.started_at)  #: queued → process started


@dataclass(frozen=True)
class NodeUsage:
    """A node row with the jobs it holds (starting, running or cancelling)."""

    id: str
    hostname: str
    status: str  #: as stored: ``active`` or ``stopped``
    slots: int
    started_at: datetime
    last_heartbeat_at: datetime
    active_jobs: int  #: the scope's jobs on this node
    used_slots: int  #: slots held by every tenant's jobs (infrastructure)


@dataclass(frozen=True)
class Distribution:
    """Cumulative counts of values ≤ each bound (``+Inf`` last), their count and sum."""

    buckets: tuple[int, ...]
    count: int
    total: float


def _scope(scope: Scope) -> list[sa.ColumnElement[bool]]:
    return [] if isinstance(scope, Everyone) else [jobs.c.tenant_id == scope]


class StatsStore:
    """Read-only aggregate queries over jobs and nodes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def counts(
        self, scope: Scope, only: Iterable[JobState] | None = None
    ) -> dict[tuple[str, str], int]:
        """Jobs by (state, priority), optionally of some states only."""
        cond = _scope(scope)
        if only is not None:
            cond.append(jobs.c.state.in_(sorted(s.value for s in only)))
        stmt = (
            sa.select(jobs.c.state, jobs.c.priority, sa.func.count())
            .where(*cond)
            .group_by(jobs.c.state, jobs.c.priority)
        )
        with self.db.read() as conn:
            return {(st, pr): int(n) for st, pr, n in conn.execute(stmt).all()}

    def average_wait_s(self, scope: Scope, started_since: datetime) -> float | None:
        """Mean queued → started time of the jobs whose process started since then."""
        stmt = sa.select(sa.func.avg(WAIT_S)).where(
            *_scope(scope), jobs.c.started_at >= started_since, jobs.c.queued_at.is_not(None)
        )
        with self.db.read() as conn:
            value = conn.execute(stmt).scalar_one()
        return float(value) if value is not None else None

    def recent_starts(
        self, scope: Scope, since: datetime, limit: int
    ) -> list[tuple[datetime, float]]:
        """(started at, seconds waited) of the jobs started since then, at most ``limit``
        (the newest)."""
        stmt = (
            sa.select(jobs.c.started_at, WAIT_S)
            .where(*_scope(scope), jobs.c.started_at >= since, jobs.c.queued_at.is_not(None))
            .order_by(jobs.c.started_at.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            return [(at, float(w)) for at, w in conn.execute(stmt).all()]

    def recent_ends(self, scope: Scope, since: datetime, limit: int) -> list[datetime]:
        """When the jobs that ended since then ended, at most ``limit`` (the newest)."""
        stmt = (
            sa.select(jobs.c.ended_at)
            .where(*_scope(scope), jobs.c.state.in_(_TERMINAL), jobs.c.ended_at >= since)
            .order_by(jobs.c.ended_at.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            return [at for (at,) in conn.execute(stmt).all()]

    def ended_by_state(self, scope: Scope, since: datetime) -> dict[str, int]:
        """Jobs in a final state that ended since then, by state."""
        stmt = (
            sa.select(jobs.c.state, sa.func.count())
            .where(*_scope(scope), jobs.c.state.in_(_TERMINAL), jobs.c.ended_at >= since)
            .group_by(jobs.c.state)
        )
        with self.db.read() as conn:
            return {st: int(n) for st, n in conn.execute(stmt).all()}

    def average_duration_s(self, scope: Scope, since: datetime) -> float | None:
        """Mean running time of the jobs that succeeded since then."""
        stmt = sa.select(sa.func.avg(RUN_S)).where(
            *_scope(scope),
            jobs.c.state == JobState.SUCCEEDED.value,
            jobs.c.ended_at >= since,
            jobs.c.started_at.is_not(None),
        )
        with self.db.read() as conn:
            value = conn.execute(stmt).scalar_one()
        return float(value) if value is not None else None

    def median_duration_s(self, scope: Scope, recent: int = 100) -> float | None:
        """Median running time of the ``recent`` last succeeded jobs (None without any)."""
        stmt = (
            sa.select(RUN_S)
            .where(
                *_scope(scope),
                jobs.c.state == JobState.SUCCEEDED.value,
                jobs.c.started_at.is_not(None),
                jobs.c.ended_at.is_not(None),
            )
            .order_by(jobs.c.ended_at.desc())
            .limit(recent)
        )
        with self.db.read() as conn:
            values = [float(v) for v in conn.execute(stmt).scalars().all()]
        return statistics.median(values) if values else None

    def nodes(self, scope: Scope) -> list[NodeUsage]:
        """Every node with the scope's active jobs and all tenants' used slots on it."""
        mine: sa.ColumnElement[int] = (
            sa.literal(1)
            if isinstance(scope, Everyone)
            else sa.case((jobs.c.tenant_id == scope, 1), else_=0)
        )
        usage = (
            sa.select(jobs.c.node_id, sa.func.sum(mine), sa.func.sum(jobs.c.slots))
            .where(jobs.c.state.in_(_ACTIVE), jobs.c.node_id.is_not(None))
            .group_by(jobs.c.node_id)
        )
        with self.db.read() as conn:
            held = {n: (int(a or 0), int(s or 0)) for n, a, s in conn.execute(usage).all()}
            rows = conn.execute(sa.select(nodes).order_by(nodes.c.id)).mappings().all()
        return [
            NodeUsage(
                id=r["id"],
                hostname=r["hostname"],
                status=r["status"],
                slots=int(r["slots"]),
                started_at=r["started_at"],
                last_heartbeat_at=r["last_heartbeat_at"],
                active_jobs=held.get(r["id"], (0, 0))[0],
                used_slots=held.get(r["id"], (0, 0))[1],
            )
            for r in rows
        ]

    def duration_distributions(
        self, scope: Scope, since: datetime, bounds: Sequence[float]
    ) -> dict[str, Distribution]:
        """Running times of the jobs that ended since then (having started), by state."""
        cond = [
            *_scope(scope),
            jobs.c.state.in_(_TERMINAL),
            jobs.c.ended_at >= since,
            jobs.c.started_at.is_not(None),
        ]
        return self._distributions(RUN_S, jobs.c.state, cond, bounds)

    def wait_distribution(
        self, scope: Scope, since: datetime, bounds: Sequence[float]
    ) -> Distribution:
        """Queued → started times of the jobs whose process started since then."""
        cond = [*_scope(scope), jobs.c.started_at >= since, jobs.c.queued_at.is_not(None)]
        return self._distributions(WAIT_S, None, cond, bounds)[""]

    def _distributions(
        self,
        value: sa.ColumnElement[float],
        group: sa.ColumnElement[str] | None,
        cond: list[sa.ColumnElement[bool]],
        bounds: Sequence[float],
    ) -> dict[str, Distribution]:
        """By value of ``group`` (or one entry under ``""`` without a group)."""
        below = [sa.func.sum(sa.case((value <= b, 1), else_=0)) for b in bounds]
        figures = (sa.func.count(), sa.func.sum(value), *below)
        stmt: sa.Select[Any]
        if group is None:
            stmt = sa.select(sa.literal_column("''"), *figures).where(*cond)
        else:
            stmt = sa.select(group, *figures).where(*cond).group_by(group)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        out = {}
        for row in rows:
            g, n, total, *counts = tuple(row)
            cumulative = (*(int(c or 0) for c in counts), int(n))
            out[str(g)] = Distribution(cumulative, int(n), float(total or 0.0))
        return out
