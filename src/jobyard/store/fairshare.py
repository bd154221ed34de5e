"""Fair-share accounting (see ``domain/fairshare.py``): each tenant's decayed usage,
kept per tenant and node in ``tenant_usage``, and its weight.

A claim or an end changes the row of its tenant and of the node that claimed the job
(``running_slots`` ± the job's slots, the usage brought up to the step's time) in the
dispatch step's own transaction: one upsert per tenant the step touched, after
everything else and in tenant order, so two steps never wait for each other in a
cycle. No history is scanned. A node reads all rows (a tenant's usage is the sum of
its rows) at most every :data:`REFRESH_S` and keeps its copy current with its own
claims and ends in between: another node's claims show within that time.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from jobyard.domain import fairshare
from jobyard.domain.fairshare import Standing
from jobyard.domain.states import JobState
from jobyard.store import dialects
from jobyard.store.database import Database
from jobyard.store.prepared import PreparedStatement
from jobyard.store.tables import job_counts, tenant_usage, tenants

#: how long a node's copy of the usage table serves its claims before it is read again
REFRESH_S = 1.0
#: the default half-life of usage: a slot-second counts half after this many seconds
DEFAULT_HALF_LIFE_S = 600.0
#: a (tenant, node) row with no running slots, untouched for this long, is folded into
#: the tenant's folded row (:meth:`FairShareStore.fold`)
FOLD_AFTER_S = 3600.0
#: the node id of a tenant's folded row: the usage of nodes that no longer run its jobs
FOLDED_NODE = "~folded"
#: folded usage below this many slot-seconds is dropped: it changes no one's turn
NEGLIGIBLE_S = 1e-3

_USAGE_ROWS = sa.select(
    tenant_usage.c.tenant_id,
    tenant_usage.c.usage_s,
    tenant_usage.c.running_slots,
    tenant_usage.c.usage_at,
)
_WEIGHTS = sa.select(tenants.c.id, tenants.c.fair_share_weight).where(
    tenants.c.fair_share_weight.is_not(None)
)
#: tenants with queued jobs, from the counts the triggers keep (no scan of jobs)
_QUEUED_TENANTS = (
    sa.select(job_counts.c.tenant_id)
    .where(job_counts.c.state == JobState.QUEUED.value)
    .group_by(job_counts.c.tenant_id)
    .having(sa.func.sum(job_counts.c.n) > 0)
)

#: (tenant, node) → slots added (claims) or removed (ends)
Deltas = dict[tuple[str, str], int]


def _upsert(dialect_name: str) -> sa.ClauseElement:
    """Add ``b_d`` running slots to a (tenant, node) row, its usage brought to ``b_now``
    first (exactly, see ``domain/fairshare.usage_at``); a new row starts at 0."""
    now = sa.bindparam("b_now", type_=sa.Float())
    k = sa.bindparam("b_k", type_=sa.Float())
    d = sa.bindparam("b_d", type_=sa.Integer())
    cur = tenant_usage.c
    ins = dialects.insert_with_conflicts(tenant_usage, dialect_name).values(
        tenant_id=sa.bindparam("b_t"),
        node_id=sa.bindparam("b_n"),
        usage_s=0.0,
        running_slots=d,
        usage_at=now,
    )
    decay = sa.func.exp(-k * (now - cur.usage_at))
    newer = cur.usage_at < now
    upsert: sa.ClauseElement = ins.on_conflict_do_update(
        index_elements=[cur.tenant_id, cur.node_id],
        set_={
            "usage_s": sa.case(
                (newer, cur.usage_s * decay + cur.running_slots * (1.0 - decay) / k),
                else_=cur.usage_s,
            ),
            "running_slots": cur.running_slots + d,
            "usage_at": sa.case((newer, now), else_=cur.usage_at),
        },
    )
    return upsert


@dataclass
class Snapshot:
    """Every tenant with usage, a weight or queued jobs, as of ``at`` (epoch seconds)."""

    at: float
    standings: dict[str, Standing] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)  #: tenants with queued jobs

    def standing(self, tenant: str) -> Standing:
        s = self.standings.get(tenant)
        if s is None:
            s = self.standings[tenant] = Standing(0.0, 0)
        return s

    def key(self, tenant: str) -> tuple[float, float]:
        """The tenant's fair-share key (lower goes first), see ``Standing.key``."""
        return self.standing(tenant).key()

    def add_running(self, tenant: str, slots: int) -> None:
        self.standing(tenant).running += slots

    def advanced(self, now: float, k: float) -> Snapshot:
        """A copy as of ``now`` (usage accrued by the running slots meanwhile); each
        tenant's standing is worked out when first asked for."""
        return _Advanced(self, now, k)


class _Advanced(Snapshot):
    """A snapshot moved forward in time, tenant by tenant as they are looked at (a claim
    looks at the tenants of its candidates, not at every tenant)."""

    def __init__(self, base: Snapshot, now: float, k: float) -> None:
        super().__init__(now, {}, set(base.queued))
        self._base = base.standings
        elapsed = max(0.0, now - base.at)
        # usage_at(u, r, elapsed) = u * d + r * c, the same d and c for every tenant
        self._d = math.exp(-k * elapsed)
        self._c = (1.0 - self._d) / k
        self._keys: dict[str, tuple[float, float]] = {}

    def key(self, tenant: str) -> tuple[float, float]:
        found = self._keys.get(tenant)
        if found is None:
            found = self._keys[tenant] = self.standing(tenant).key()
        return found

    def add_running(self, tenant: str, slots: int) -> None:
        self.standing(tenant).running += slots
        self._keys.pop(tenant, None)

    def standing(self, tenant: str) -> Standing:
        s = self.standings.get(tenant)
        if s is None:
            b = self._base.get(tenant)
            if b is None:
                s = Standing(0.0, 0)
            else:
                s = Standing(b.usage * self._d + b.running * self._c, b.running, b.weight)
            self.standings[tenant] = s
        return s


class FairShareStore:
    """Reads and writes of fair-share usage; a cached copy for the claim path."""

    def __init__(self, db: Database, half_life_s: float = DEFAULT_HALF_LIFE_S) -> None:
        self.db = db
        self.half_life_s = half_life_s
        self.k = fairshare.decay_rate(half_life_s)
        self._upsert = PreparedStatement(_upsert(db.dialect), db.engine.dialect)
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._cached_mono = 0.0

    # ---- reads -----------------------------------------------------------------------
    def read(self, conn: sa.Connection, now: float) -> Snapshot:
        """Every tenant's standing as of ``now``, from the database."""
        snap = Snapshot(now)
        for tenant, usage, running, at in conn.execute(_USAGE_ROWS):
            s = snap.standing(tenant)
            s.usage += fairshare.usage_at(float(usage), int(running), now - float(at), self.k)
            s.running += int(running)
        for tenant, weight in conn.execute(_WEIGHTS):
            snap.standing(tenant).weight = int(weight)
        snap.queued = {t for (t,) in conn.execute(_QUEUED_TENANTS)}
        return snap

    def snapshot(self, now: float) -> Snapshot:
        """Like :meth:`read`, in a read transaction of its own."""
        with self.db.read() as conn:
            return self.read(conn, now)

    def for_claim(self, conn: sa.Connection, now: float) -> Snapshot:
        """The standings for a claim: a copy as of ``now`` of the cached table, read again
        in ``conn`` when older than :data:`REFRESH_S`."""
        mono = time.monotonic()
        with self._lock:
            cached = self._cached
            fresh = cached is not None and mono - self._cached_mono < REFRESH_S
        if cached is None or not fresh:
            cached = self.read(conn, now)
            with self._lock:
                self._cached, self._cached_mono = cached, mono
        with self._lock:
            return cached.advanced(now, self.k)

    # ---- writes ----------------------------------------------------------------------
    def record(self, conn: sa.Connection, deltas: Deltas, now: float) -> None:
        """Write a step's changes of running slots, one row each, in tenant order."""
        changes: list[dict[str, object]] = [
            {"b_t": t, "b_n": n, "b_d": d, "b_now": now, "b_k": self.k}
            for (t, n), d in sorted(deltas.items())
            if d
        ]
        if changes:
            self._upsert.execute_many(conn, changes)

    def applied(self, deltas: Deltas, now: float) -> None:
        """After the step's commit: the same changes in the cached copy."""
        with self._lock:
            cached = self._cached
            if cached is None or not deltas:
                return
            elapsed = now - cached.at
            if elapsed > 0:  # every tenant to ``now``, so that one ``at`` holds for all
                for s in cached.standings.values():
                    s.usage = fairshare.usage_at(s.usage, s.running, elapsed, self.k)
                cached.at = now
            for (tenant, _node), d in deltas.items():
                cached.standing(tenant).running += d

    def fold(self, now: float, idle_s: float = FOLD_AFTER_S) -> int:
        """Fold the tenants' rows of nodes that hold none of their jobs and have not
        for ``idle_s`` into one row per tenant (``FOLDED_NODE``), and drop folded rows
        whose usage decayed to nothing; the rows folded. Without it a row is kept per
        tenant and node ever (nodes come and go: every restart with a new id, every
        autoscaled host). Exact: decay is the same factor for every row, so the sum of
        the rows decayed to ``now`` is the usage the tenant had; a row a claim touches
        meanwhile is not folded (the delete matches only rows still idle), and a node
        that claims for the tenant again starts a new row at 0."""
        cur = tenant_usage.c
        with self.db.write() as conn:
            gone = conn.execute(
                sa.delete(tenant_usage)
                .where(
                    cur.running_slots == 0,
                    cur.usage_at < now - idle_s,
                    cur.node_id != FOLDED_NODE,
                )
                .returning(cur.tenant_id, cur.usage_s, cur.usage_at)
            ).all()
            folded: dict[str, float] = {}
            for tenant, usage, at in gone:
                decayed = fairshare.usage_at(float(usage), 0, now - float(at), self.k)
                folded[tenant] = folded.get(tenant, 0.0) + decayed
            rows = conn.execute(
                sa.select(cur.tenant_id, cur.usage_s, cur.usage_at).where(
                    cur.node_id == FOLDED_NODE
                )
            ).all()
            for tenant, usage, at in rows:
                total = folded.pop(str(tenant), 0.0) + fairshare.usage_at(
                    float(usage), 0, now - float(at), self.k
                )
                where = (cur.tenant_id == tenant) & (cur.node_id == FOLDED_NODE)
                if total < NEGLIGIBLE_S:
                    conn.execute(sa.delete(tenant_usage).where(where))
                else:
                    conn.execute(
                        sa.update(tenant_usage).where(where).values(usage_s=total, usage_at=now)
                    )
            for tenant, total in sorted(folded.items()):
                if total >= NEGLIGIBLE_S:
                    conn.execute(
                        sa.insert(tenant_usage).values(
                            tenant_id=tenant,
                            node_id=FOLDED_NODE,
                            usage_s=total,
                            running_slots=0,
                            usage_at=now,
                        )
                    )
        if gone:
            self.forget()
        return len(gone)

    def forget(self) -> None:
        """Drop the cached copy (a weight changed)."""
        with self._lock:
            self._cached = None
