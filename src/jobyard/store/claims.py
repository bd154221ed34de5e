"""Claims and leases, apart from job rows: what a node takes from the queue, the
leases it renews, the scheduled jobs it promotes, and the end of each attempt.

Every write of an attempt after its claim is fenced by the lease epoch. Each method
owns one transaction and takes several jobs at once, so a node pays one commit for
the jobs that start (or end) together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from jobyard import errors
from jobyard.clock import to_epoch
from jobyard.domain import retry, states
from jobyard.domain.jobs import Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.store import dialects
from jobyard.store.admission import Admission, env_key, held_back, tenant_key
from jobyard.store.database import Database, on_disk
from jobyard.store.fairshare import DEFAULT_HALF_LIFE_S, Deltas, FairShareStore, Snapshot
from jobyard.store.jobs import (
    _IS_ACTIVE,
    _USAGE_COLUMNS,
    JobStore,
    job_from_row,
)
from jobyard.store.prepared import PreparedStatement, prepared_insert
from jobyard.store.tables import job_attempts, job_events, jobs, tenants
from jobyard.store.tracking import TrackingStore

#: queued jobs looked at per claim (jobs of a full environment or tenant are skipped)
CLAIM_SCAN = 50
#: queued jobs looked at in queue order when several tenants compete (fair share reads
#: the heads of the fairest tenants' own queues; these catch tenants new since the
#: standings were read), or when no rule can hold back the first ones (no quota, no
#: environment, their slots fit: then a claim of up to this many jobs needs no more)
CLAIM_SCAN_FAIR = 8
#: at most this many tenants whose jobs are not among the first ``CLAIM_SCAN`` queued
#: are looked at by one claim for fair share (the furthest under their share first)
FAIR_PROBES = 8

# The hot statements are built once: SQLAlchemy then reuses their cache key and
# compiled form, instead of building an UPDATE per call. Each is a fenced
# compare-and-set; the state machine is checked in Python (``check_transition``).
_TIME = jobs.c.updated_at.type


def _b(name: str, type_: sa.types.TypeEngine[object] | None = None) -> sa.BindParameter[object]:
    return sa.bindparam(name, type_=type_)


#: scheduled jobs, as the partial index ``ix_jobs_scheduled`` needs it (a literal state)
_IS_SCHEDULED = jobs.c.state == sa.literal_column(f"'{JobState.SCHEDULED.value}'")
#: the claim loop's timer reads it every poll interval: built once (40 µs less a read)
_NEXT_SCHEDULED = sa.select(sa.func.min(jobs.c.scheduled_at)).where(_IS_SCHEDULED)
#: what a claim reads of a candidate: with its tenant's own quota (``max_running_jobs``,
#: None: none), so that a claim needs no read of its own to learn a tenant has none
_CANDIDATE_COLUMNS = (
    jobs.c.id,
    jobs.c.tenant_id,
    jobs.c.environment_id,
    jobs.c.slots,
    sa.select(tenants.c.max_running_jobs)
    .where(tenants.c.id == jobs.c.tenant_id)
    .scalar_subquery()
    .label("tenant_quota"),
)
_CANDIDATE_COLUMNS_SQL = (
    "id, tenant_id, environment_id, slots,"
    " (SELECT max_running_jobs FROM tenants WHERE tenants.id = jobs.tenant_id)"
)
#: queued jobs in queue order, read along the partial index ``ix_jobs_queue`` (``WHERE
#: state = 'queued'``): the state is a literal, as a partial index needs (a bound state
#: would make the database find every queued job by state and sort them all)
_CANDIDATES = (
    sa.select(*_CANDIDATE_COLUMNS)
    .where(
        jobs.c.state == sa.literal_column(f"'{JobState.QUEUED.value}'"),
        jobs.c.slots <= _b("b_max_slots"),
        sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= _b("b_now", _TIME)),
    )
    .order_by(jobs.c.sort_key, jobs.c.seq)
    .limit(sa.bindparam("b_limit", type_=sa.Integer()))
)
#: the same on SQLite, told to use that index: without statistics its planner would
#: rather take the (state, lease_owner) index and sort all queued jobs
_CANDIDATES_SQLITE = sa.text(
    f"SELECT {_CANDIDATE_COLUMNS_SQL} FROM jobs INDEXED BY ix_jobs_queue"  # noqa: S608
    " WHERE state = 'queued' AND slots <= :b_max_slots"
    " AND (not_before IS NULL OR not_before <= :b_now)"
    " ORDER BY sort_key, seq LIMIT :b_limit"
).bindparams(
    sa.bindparam("b_max_slots", type_=sa.Integer()),
    _b("b_now", _TIME),
    sa.bindparam("b_limit", type_=sa.Integer()),
)
#: the head of one tenant's queue, along ``ix_jobs_tenant_queue`` (fair share)
_TENANT_HEAD = (
    sa.select(*_CANDIDATE_COLUMNS)
    .where(
        jobs.c.state == sa.literal_column(f"'{JobState.QUEUED.value}'"),
        jobs.c.tenant_id == _b("b_tenant"),
        jobs.c.slots <= _b("b_max_slots"),
        sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= _b("b_now", _TIME)),
    )
    .order_by(jobs.c.tenant_id, jobs.c.sort_key, jobs.c.seq)
    .limit(sa.bindparam("b_limit", type_=sa.Integer()))
)
_TENANT_HEAD_SQLITE = sa.text(
    f"SELECT {_CANDIDATE_COLUMNS_SQL} FROM jobs INDEXED BY ix_jobs_tenant_queue"  # noqa: S608
    " WHERE state = 'queued' AND tenant_id = :b_tenant AND slots <= :b_max_slots"
    " AND (not_before IS NULL OR not_before <= :b_now)"
    " ORDER BY tenant_id, sort_key, seq LIMIT :b_limit"
).bindparams(
    sa.bindparam("b_max_slots", type_=sa.Integer()),
    _b("b_now", _TIME),
    sa.bindparam("b_limit", type_=sa.Integer()),
)
_CLAIM = (
    jobs.update()
    .where(jobs.c.id == _b("b_id"), jobs.c.state == JobState.QUEUED.value)
    .values(
        state=JobState.STARTING.value,
        attempt=jobs.c.attempt + 1,
        lease_epoch=jobs.c.lease_epoch + 1,
        lease_owner=_b("b_node"),
        node_id=_b("b_node"),
        lease_expires_at=_b("b_expires", _TIME),
        exit_code=None,
        error_type=None,
        started_at=None,
        ended_at=None,
        job_token_hash=_b("b_token"),
        updated_at=_b("b_now", _TIME),
        message=_b("b_message"),
    )
    .returning(*jobs.c)
)
_RUNNING = (
    jobs.update()
    .where(
        jobs.c.id == _b("b_id"),
        jobs.c.state == JobState.STARTING.value,
        jobs.c.lease_epoch == _b("b_epoch"),
    )
    .values(
        state=JobState.RUNNING.value,
        pid=_b("b_pid"),
        pid_create_time=_b("b_create_time"),
        started_at=_b("b_started", _TIME),
        updated_at=_b("b_now", _TIME),
        message=_b("b_message"),
    )
)
_END = (
    jobs.update()
    .where(
        jobs.c.id == _b("b_id"),
        jobs.c.state == _b("b_from"),
        jobs.c.lease_epoch == _b("b_epoch"),
    )
    .values(
        state=_b("b_to"),
        message=_b("b_message"),
        error_type=_b("b_error_type"),
        exit_code=_b("b_exit_code"),
        updated_at=_b("b_now", _TIME),
        ended_at=_b("b_ended", _TIME),
        lease_owner=None,
        lease_expires_at=None,
    )
)
_END_WITH_USAGE = _END.values({c: _b(f"b_{c}") for c in _USAGE_COLUMNS})
#: an end written with its attempt's running mark (from ``starting``): the row as the
#: mark and then the end would leave it
_RUNNING_FIELDS = {
    "pid": _b("b_pid"),
    "pid_create_time": _b("b_create_time"),
    "started_at": _b("b_started", _TIME),
}
_MARKED_END = _END.values(_RUNNING_FIELDS)
_MARKED_END_WITH_USAGE = _END_WITH_USAGE.values(_RUNNING_FIELDS)
_SELECT_JOB = sa.select(jobs).where(jobs.c.id == _b("b_id"))
_ATTEMPT_COLUMNS = (
    "tenant_id",
    "job_id",
    "attempt",
    "node_id",
    "state",
    "started_at",
    "ended_at",
    "exit_code",
    "error_type",
    "message",
)
_EVENT_COLUMNS = ("tenant_id", "job_id", "at", "kind", "from_state", "to_state", "message", "data")


class _Candidate(NamedTuple):
    """A queued job a claim looks at."""

    id: str
    tenant_id: str
    environment_id: str | None
    slots: int
    tenant_quota: int | None  #: the tenant's own ``max_running_jobs`` (None: none)


@dataclass(frozen=True)
class Started:
    """An attempt whose process runs: ``job`` as claimed (state ``starting``)."""

    job: Job
    pid: int | None  #: None: the job runs on another host (a cluster executor)
    create_time: float
    node_id: str
    started_at: datetime  #: when the process started (it may be marked running later)


@dataclass(frozen=True)
class AttemptEnd:
    """How one attempt of ``job`` (as this node last read it) ends."""

    job: Job
    target: JobState
    message: str
    error_type: str | None = None
    exit_code: int | None = None
    usage: ResourceUsage | None = None  #: the final figures, when the process ran
    #: when the attempt ended (its process exited), if known; else when the end is
    #: written. An end written late (after a database outage) keeps its real time.
    ended_at: datetime | None = None


@dataclass(frozen=True)
class EndResult:
    """``ended``: the job after the end; else ``current``: the job as it is now (None if
    it is gone), because it changed since this node read it (cancelled, lease lost)."""

    ended: Job | None
    current: Job | None


@dataclass(frozen=True)
class ClaimRequest:
    """Claim up to one job per token hash, ``max_slots`` slots in all."""

    node_id: str
    lease_ttl_s: float
    max_slots: int
    token_hashes: tuple[str | None, ...]
    default_max_running: int | None = None


@dataclass(frozen=True)
class Step:
    """What one dispatch transaction did, in the order of its inputs."""

    running: list[Job | None]
    ended: list[EndResult]
    claimed: list[Job]
    #: waits until the step's commit is on disk (StoreUnavailable if it cannot be):
    #: call it before a claimed job's process starts (see :meth:`ClaimStore.step`)
    synced: Callable[[], None] = on_disk


class ClaimStore:
    """All SQL of the dispatcher: claims, leases, promotions and ends of attempts."""

    def __init__(
        self,
        db: Database,
        jobs_store: JobStore | None = None,
        *,
        fair_share: bool = True,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
    ) -> None:
        self.db = db
        self.jobs = jobs_store or JobStore(db)
        #: fair share between tenants (None: plain queue order across tenants)
        self.fair = FairShareStore(db, half_life_s) if fair_share else None
        # the hot statements, compiled once for the dialect (see ``prepared.py``): a
        # step's SQLAlchemy per-call work cost more than most of its statements
        dialect = db.engine.dialect
        sqlite = db.dialect == "sqlite"

        def prepare(stmt: sa.ClauseElement) -> PreparedStatement:
            return PreparedStatement(stmt, dialect)

        def for_claim(stmt: sa.Select[Any]) -> PreparedStatement:
            return prepare(dialects.lock_for_claim(stmt, db.dialect))

        self._tenant_head = prepare(_TENANT_HEAD_SQLITE) if sqlite else for_claim(_TENANT_HEAD)
        self._candidates = prepare(_CANDIDATES_SQLITE) if sqlite else for_claim(_CANDIDATES)
        self._claim_one = prepare(_CLAIM)
        #: the rules a queued job must pass (the insight asks the same, see admission.py)
        self.admission = Admission(db)
        self._insert_attempt = PreparedStatement(
            dialects.insert_ignoring_conflicts(job_attempts, db.dialect), dialect, _ATTEMPT_COLUMNS
        )
        #: a step locks the rows it will write in order of id first, as a renewal of the
        #: leases does: two transactions of a node (or of two nodes: a reaper's ends) that
        #: write the same jobs never wait for each other in a cycle (PostgreSQL; SQLite's
        #: write transaction holds the whole database)
        self._lock_in_order: sa.Executable | None = (
            None
            if sqlite
            else dialects.lock_row(
                sa.select(jobs.c.id)
                .where(jobs.c.id.in_(sa.bindparam("ids", expanding=True)))
                .order_by(jobs.c.id),
                db.dialect,
            )
        )
        self._running = prepare(_RUNNING)
        self._end_plain = prepare(_END)
        self._end_usage = prepare(_END_WITH_USAGE)
        self._marked_end_plain = prepare(_MARKED_END)
        self._marked_end_usage = prepare(_MARKED_END_WITH_USAGE)

    # ---- one transaction for a dispatch step ------------------------------------------
    def step(
        self,
        *,
        now: datetime,
        starts: Sequence[Started] = (),
        ends: Sequence[AttemptEnd] = (),
        claim: ClaimRequest | None = None,
    ) -> Step:
        """In one transaction, in this order: mark the started attempts running, write
        the ends, claim queued jobs (see :meth:`mark_running`, :meth:`end_attempts`,
        :meth:`claim`); the step's state events in one statement, in that order.

        A step that only claims commits without waiting for the disk, and its answer's
        ``synced`` waits for the sync that runs meanwhile (SQLite; PostgreSQL's commits
        are synced): a power failure before the sync can only put its jobs back in the
        queue, as long as no process of theirs started. Running marks and ends (facts a
        client may act on) are synced before the step returns."""
        if not starts and not ends and (claim is None or not claim.token_hashes):
            return Step([], [], [])
        claim_only = not starts and not ends
        events: list[_Event] = []  # of the whole step, inserted by one statement
        attempts: list[dict[str, object]] = []
        deltas: Deltas = {}  # running slots per (tenant, node), for fair share
        ids = sorted({s.job.id for s in starts} | {e.job.id for e in ends})
        # an attempt that started and ended since the last step: its end is written by
        # its running mark's UPDATE (one statement instead of two; its events are the same)
        with_mark = {e.job.id: e for e in ends if _plain_end(e, now)}
        with self.db.held_write(synced=not claim_only) as conn:
            if self._lock_in_order is not None and len(ids) > 1:
                conn.execute(self._lock_in_order, {"ids": ids})
            running, written = self._mark_running(conn, starts, now, events, with_mark)
            ended = [
                self._end(conn, end, now, events, attempts, deltas, end.job.id in written)
                for end in ends
            ]
            claimed = self._claim(conn, claim, now, events, deltas) if claim is not None else []
            _insert_events(conn, now, events)
            if attempts:
                self._insert_attempt.execute_many(conn, attempts)
            if self.fair is not None:  # last: the only rows two steps may both write
                self.fair.record(conn, deltas, to_epoch(now))
        if self.fair is not None:
            self.fair.applied(deltas, to_epoch(now))
        if any(e.ended is not None for e in ended):
            self.db.jobs_ended()
        if claim_only and claimed:
            return Step(running, ended, claimed, self.db.sync())
        return Step(running, ended, claimed)

    # ---- claims -----------------------------------------------------------------------
    def claim(
        self,
        *,
        node_id: str,
        now: datetime,
        lease_ttl_s: float,
        max_slots: int,
        token_hashes: Sequence[str | None],
        default_max_running: int | None = None,
    ) -> list[Job]:
        """Claim queued jobs in queue order, at most one per token hash and ``max_slots``
        slots in all, skipping jobs whose environment or tenant runs its maximum already
        (queued → starting, lease epoch and attempt bumped), in one transaction."""
        request = ClaimRequest(
            node_id=node_id,
            lease_ttl_s=lease_ttl_s,
            max_slots=max_slots,
            token_hashes=tuple(token_hashes),
            default_max_running=default_max_running,
        )
        step = self.step(now=now, claim=request)
        step.synced()
        return step.claimed

    def claim_next(
        self,
        *,
        node_id: str,
        now: datetime,
        lease_ttl_s: float,
        max_slots: int = 1_000_000,
        token_hash: str | None = None,
        default_max_running: int | None = None,
    ) -> Job | None:
        """Claim the first claimable queued job, or None."""
        found = self.claim(
            node_id=node_id,
            now=now,
            lease_ttl_s=lease_ttl_s,
            max_slots=max_slots,
            token_hashes=[token_hash],
            default_max_running=default_max_running,
        )
        return found[0] if found else None

    def _claim(
        self,
        conn: sa.Connection,
        req: ClaimRequest,
        now: datetime,
        events: list[_Event],
        deltas: Deltas,
    ) -> list[Job]:
        """Claim within ``req``; the claims' events are appended to ``events``, their
        slots to ``deltas``. Between tenants that compete, fair share picks the tenant
        of each next claim; within a tenant (or with one tenant), queue order does."""
        if not req.token_hashes or req.max_slots <= 0:
            return []
        states.check_transition(JobState.QUEUED, JobState.STARTING)
        claimed: list[Job] = []
        message = f"Job claimed by node {req.node_id}."
        expires = now + timedelta(seconds=req.lease_ttl_s)
        standings = None
        if self.fair is not None:
            standings = self.fair.for_claim(conn, to_epoch(now))
        competing = standings is not None and len(standings.queued) > 1
        rows = self._first_queued(conn, req, now, competing)
        snap, pool = self._fair_pool(conn, rows, req, now, deltas, standings)
        rooms = self.admission.rooms(
            conn,
            (r.tenant_id for r in pool),
            (r.environment_id for r in pool if r.environment_id is not None),
            req.default_max_running,
            lock=True,
            quotas={r.tenant_id: r.tenant_quota for r in pool},
        )
        room = {k: r.left for k, r in rooms.items()}
        # the candidates per tenant in queue order (one list when fair share is not needed)
        queues: dict[str, list[_Candidate]] = {}
        for r in pool:
            queues.setdefault("" if snap is None else r.tenant_id, []).append(r)
        heads = {t: 0 for t in queues}  # next candidate of each
        place = {r.id: i for i, r in enumerate(pool)}  # ties go to the older queue head
        free = req.max_slots
        while queues and len(claimed) < len(req.token_hashes) and free > 0:
            q = "" if snap is None else _fairest(queues, heads, place, snap)
            cand = queues[q][heads[q]]
            job_id, tenant, env_id, slots = cand.id, cand.tenant_id, cand.environment_id, cand.slots
            heads[q] += 1
            if heads[q] >= len(queues[q]):
                del queues[q]
            if held_back(
                room, tenant_id=tenant, environment_id=env_id, slots=slots, free_slots=free
            ):
                continue
            params = {
                "b_id": job_id,
                "b_node": req.node_id,
                "b_expires": expires,
                "b_token": req.token_hashes[len(claimed)],
                "b_now": now,
                "b_message": message,
            }
            found = self._claim_one.mappings(conn, params)
            if not found:  # on SQLite the write lock makes this impossible
                continue
            claimed.append(job_from_row(found[0]))
            free -= slots
            for k in (tenant_key(tenant), *([env_key(env_id)] if env_id is not None else [])):
                left = room[k]
                room[k] = None if left is None else left - 1
            key = (tenant, req.node_id)
            deltas[key] = deltas.get(key, 0) + slots
            if snap is not None:
                snap.add_running(tenant, slots)
        events.extend(
            (
                j,
                JobState.QUEUED,
                JobState.STARTING,
                message,
                {"node_id": req.node_id, "attempt": j.attempt},
            )
            for j in claimed
        )
        return claimed

    def _first_queued(
        self, conn: sa.Connection, req: ClaimRequest, now: datetime, competing: bool
    ) -> list[_Candidate]:
        """The first queued jobs in queue order: ``CLAIM_SCAN_FAIR`` of them when that is
        enough, that is when tenants compete (fair share reads the heads of their queues
        itself) or when no rule can hold back the jobs the claim wants (no environment,
        no quota, their slots fit: the usual case); else ``CLAIM_SCAN``, to look past
        the jobs a rule holds back."""

        def read(limit: int) -> list[_Candidate]:
            params = {"b_max_slots": req.max_slots, "b_now": now, "b_limit": limit}
            return [_Candidate(*r) for r in self._candidates.rows(conn, params)]

        wanted = len(req.token_hashes)
        if wanted <= CLAIM_SCAN_FAIR:
            rows = read(CLAIM_SCAN_FAIR)
            if len(rows) < CLAIM_SCAN_FAIR or competing or _unhindered(rows[:wanted], req):
                return rows
        return read(CLAIM_SCAN)

    def _fair_pool(
        self,
        conn: sa.Connection,
        rows: Sequence[_Candidate],
        req: ClaimRequest,
        now: datetime,
        deltas: Deltas,
        snap: Snapshot | None,
    ) -> tuple[Snapshot | None, list[_Candidate]]:
        """The standings of the tenants (None when fair share has nothing to decide: one
        tenant waits) and the candidates: ``rows`` (the first queued jobs), plus the
        heads of the queues of tenants with queued jobs further back that go before
        every tenant in ``rows`` (or, with several free slots, the next ones)."""
        if snap is None:
            return None, list(rows)
        for (tenant, _node), d in deltas.items():  # the step's ends, written before
            snap.add_running(tenant, d)
        seen = {r.tenant_id for r in rows}
        others = [t for t in snap.queued if t not in seen]
        if not others and len(seen) <= 1:
            return None, list(rows)
        pool = list(rows)
        key = snap.key
        best = min((key(t) for t in seen), default=None)
        wanted = min(len(req.token_hashes), FAIR_PROBES)
        if wanted <= 1:  # one free slot: only the fairest tenant of all matters
            first = min(others, key=lambda t: (key(t), t), default=None)
            probe = [first] if first is not None and (best is None or key(first) < best) else []
        else:
            probe = sorted(others, key=lambda t: (key(t), t))[:FAIR_PROBES]
        for t in probe:
            if wanted <= 0:
                break
            head = self._tenant_head.rows(
                conn,
                {"b_tenant": t, "b_max_slots": req.max_slots, "b_now": now, "b_limit": wanted},
            )
            if head:
                pool.extend(_Candidate(*r) for r in head)
                wanted -= 1
        if len({r.tenant_id for r in pool}) <= 1:
            return None, pool
        return snap, pool

    # ---- starts and ends ----------------------------------------------------------------
    def mark_running(self, starts: Sequence[Started], now: datetime) -> list[Job | None]:
        """starting → running for each started attempt (fenced), in one transaction; the
        running job, or None where the job changed meanwhile (cancelled, lease lost)."""
        return self.step(now=now, starts=starts).running

    def _mark_running(
        self,
        conn: sa.Connection,
        starts: Sequence[Started],
        now: datetime,
        events: list[_Event],
        with_mark: Mapping[str, AttemptEnd],
    ) -> tuple[list[Job | None], set[str]]:
        """The running marks; their events are appended to ``events``. A mark whose
        attempt ends in ``with_mark`` (a plain end of the same lease) writes that end
        too; the ids of those jobs come second."""
        out: list[Job | None] = []
        written: set[str] = set()
        if not starts:
            return out, written
        states.check_transition(JobState.STARTING, JobState.RUNNING)
        for s in starts:
            where = f" (pid {s.pid})" if s.pid is not None else ""
            message = f"Job is running on node {s.node_id}{where}."
            params = {
                "b_id": s.job.id,
                "b_epoch": s.job.lease_epoch,
                "b_pid": s.pid,
                "b_create_time": s.create_time,
                "b_started": s.started_at,
                "b_now": now,
                "b_message": message,
            }
            end = with_mark.get(s.job.id)
            if end is not None and end.job.lease_epoch == s.job.lease_epoch:
                fenced, end_params = self._end_statement(end, now, marked=True)
                if fenced.rowcount(conn, {**params, **end_params}):
                    written.add(s.job.id)
                else:  # changed meanwhile: the end is tried by itself, and says how
                    out.append(None)
                    continue
            elif not self._running.rowcount(conn, params):
                out.append(None)
                continue
            job = s.job.evolve(
                state=JobState.RUNNING,
                pid=s.pid,
                pid_create_time=s.create_time,
                started_at=s.started_at,
                updated_at=now,
                message=message,
            )
            out.append(job)
            data = {"pid": s.pid, "node_id": s.node_id}
            events.append((s.job, JobState.STARTING, JobState.RUNNING, message, data))
        return out, written

    def end_attempts(self, ends: Sequence[AttemptEnd], now: datetime) -> list[EndResult]:
        """Write the ends of attempts in one transaction: each a fenced compare-and-set
        from the state its job was read in, with its event, the attempt's record, and the
        return to ``queued`` when its retry policy says so. An end whose job changed
        meanwhile is not written; its result carries the job as it is now."""
        return self.step(now=now, ends=ends).ended

    def _end(
        self,
        conn: sa.Connection,
        end: AttemptEnd,
        now: datetime,
        events: list[_Event],
        attempts: list[dict[str, object]],
        deltas: Deltas,
        written: bool = False,
    ) -> EndResult:
        """One end; its event and attempt record are appended to ``events`` and
        ``attempts`` (inserted together by the caller), its freed slots to ``deltas``.
        ``written``: its row was written with the attempt's running mark already."""
        job = end.job
        ended_at = end.ended_at or now
        plan = retry.plan(job, end.target, end.error_type, now)
        if plan is not None:  # writes its events at once: those gathered so far go first
            _insert_events(conn, now, events)
            events.clear()
            result = self._end_and_retry(conn, end, now, plan)
            if result.ended is not None:
                _freed(deltas, job)
            return result
        done = 1 if written else 0
        if not done and states.can_transition(job.state, end.target):
            fenced, params = self._end_statement(end, now, marked=False)
            done = fenced.rowcount(conn, params)
        if not done:
            row = conn.execute(_SELECT_JOB, {"b_id": job.id}).mappings().first()
            return EndResult(ended=None, current=job_from_row(row) if row else None)
        events.append((job, job.state, end.target, end.message, {}))
        _freed(deltas, job)
        if job.attempt > 0:
            attempts.append(_attempt_row(job, end, ended_at))
        ended = job.evolve(
            state=end.target,
            message=end.message,
            error_type=end.error_type,
            exit_code=end.exit_code,
            ended_at=ended_at,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        return EndResult(ended=ended, current=ended)

    def _end_statement(
        self, end: AttemptEnd, now: datetime, *, marked: bool
    ) -> tuple[PreparedStatement, dict[str, object]]:
        """The fenced UPDATE of ``end`` and its parameters; ``marked``: the one that also
        writes the attempt's running mark (from ``starting``; it takes the mark's
        parameters too)."""
        job = end.job
        params: dict[str, object] = {
            "b_id": job.id,
            "b_from": JobState.STARTING.value if marked else job.state.value,
            "b_epoch": job.lease_epoch,
            "b_to": end.target.value,
            "b_message": end.message,
            "b_error_type": end.error_type,
            "b_exit_code": end.exit_code,
            "b_now": now,
            "b_ended": end.ended_at or now,
        }
        if end.usage is None:
            return (self._marked_end_plain if marked else self._end_plain), params
        params.update({f"b_{c}": getattr(end.usage, c) for c in _USAGE_COLUMNS})
        return (self._marked_end_usage if marked else self._end_usage), params

    def _end_and_retry(
        self, conn: sa.Connection, end: AttemptEnd, now: datetime, plan: retry.RetryPlan
    ) -> EndResult:
        """The end and the return to ``queued`` in one step (readers never see the end)."""
        ended_at = end.ended_at or now
        values: dict[str, object] = {"error_type": end.error_type, "ended_at": ended_at}
        if end.exit_code is not None:
            values["exit_code"] = end.exit_code
        if end.usage is not None:
            values.update({c: getattr(end.usage, c) for c in _USAGE_COLUMNS})
        try:
            ended = self.jobs.transition(
                end.job,
                end.target,
                now=now,
                epoch=end.job.lease_epoch,
                message=end.message,
                values=values,
                retry=plan,
                conn=conn,
            )
        except (errors.StaleState, errors.InvalidTransition):
            row = conn.execute(_SELECT_JOB, {"b_id": end.job.id}).mappings().first()
            return EndResult(ended=None, current=job_from_row(row) if row else None)
        TrackingStore.record_attempt(
            conn,
            end.job,
            state=end.target.value,
            ended_at=ended_at,
            exit_code=end.exit_code,
            error_type=end.error_type,
            message=end.message,
        )
        return EndResult(ended=ended, current=ended)

    # ---- scheduled jobs -----------------------------------------------------------------
    def next_scheduled_at(self) -> datetime | None:
        """The earliest due time of a scheduled job, or None."""
        with self.db.read() as conn:
            due: datetime | None = conn.execute(_NEXT_SCHEDULED).scalar()
        return due

    def promote_due(self, now: datetime, limit: int = 100) -> int:
        """scheduled → queued for the jobs whose time has come, in one transaction."""
        stmt = (
            sa.select(jobs)
            .where(_IS_SCHEDULED, jobs.c.scheduled_at <= now)
            .order_by(jobs.c.scheduled_at)
            .limit(limit)
        )
        promoted = 0
        with self.db.write() as conn:
            for row in conn.execute(stmt).mappings().all():
                try:
                    self.jobs.transition(
                        job_from_row(row),
                        JobState.QUEUED,
                        now=now,
                        message="Scheduled time reached; job queued.",
                        conn=conn,
                    )
                    promoted += 1
                except errors.StaleState:
                    continue
        return promoted

    # ---- leases ---------------------------------------------------------------------------
    def renew_leases(
        self,
        *,
        node_id: str,
        leases: Iterable[tuple[str, int]],
        expires_at: datetime,
        usage: Mapping[str, ResourceUsage] | None = None,
    ) -> dict[str, Job]:
        """Extend the leases this node holds (and record the jobs' latest ``usage``), in
        one transaction; returns the jobs still held (by id) with their current state. A
        job missing from the answer is no longer this node's."""
        leases = list(leases)
        if not leases:
            return {}
        usage = usage or {}
        held: dict[str, Job] = {}
        with self.db.write() as conn:
            for job_id, epoch in sorted(leases):  # in order of id, as a step locks them
                values: dict[str, object] = {"lease_expires_at": expires_at}
                if job_id in usage:
                    values.update({c: getattr(usage[job_id], c) for c in _USAGE_COLUMNS})
                row = (
                    conn.execute(
                        jobs.update()
                        .where(
                            jobs.c.id == job_id,
                            jobs.c.lease_owner == node_id,
                            jobs.c.lease_epoch == epoch,
                            _IS_ACTIVE,
                        )
                        .values(**values)
                        .returning(*jobs.c)
                    )
                    .mappings()
                    .first()
                )
                if row is not None:
                    held[job_id] = job_from_row(row)
        return held

    def expired_leases(self, now: datetime, limit: int = 100) -> list[Job]:
        """Active jobs (of any node) whose lease expired."""
        stmt = (  # lease_owner: active jobs have one, and ix_jobs_leased holds only those
            sa.select(jobs)
            .where(_IS_ACTIVE, jobs.c.lease_owner.is_not(None), jobs.c.lease_expires_at < now)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [job_from_row(r) for r in conn.execute(stmt).mappings().all()]

    def owned_by(self, node_id: str) -> list[Job]:
        """Active jobs whose lease this node holds."""
        stmt = sa.select(jobs).where(_IS_ACTIVE, jobs.c.lease_owner == node_id)
        with self.db.read() as conn:
            return [job_from_row(r) for r in conn.execute(stmt).mappings().all()]


#: a state event: (job, from state, to state, message, data)
_Event = tuple[Job, JobState, JobState, str, Mapping[str, object]]


def _insert_events(conn: sa.Connection, now: datetime, changes: Sequence[_Event]) -> None:
    """The state events of a step's changes, in one statement."""
    if not changes:
        return
    prepared_insert(job_events, _EVENT_COLUMNS, conn.dialect).execute_many(
        conn,
        [
            {
                "tenant_id": job.tenant_id,
                "job_id": job.id,
                "at": now,
                "kind": "state",
                "from_state": old.value,
                "to_state": new.value,
                "message": message,
                "data": dict(data),
            }
            for job, old, new, message, data in changes
        ],
    )


def _fairest(
    queues: Mapping[str, Sequence[_Candidate]],
    heads: Mapping[str, int],
    place: Mapping[str, int],
    snap: Snapshot,
) -> str:
    """The tenant whose next candidate goes first: the lowest fair-share key, then the
    candidate's place in queue order."""
    return min(queues, key=lambda t: (snap.key(t), place[queues[t][heads[t]].id]))


def _unhindered(rows: Sequence[_Candidate], req: ClaimRequest) -> bool:
    """Whether no admission rule can hold back any of ``rows`` in a claim of all of them
    (see ``admission.held_back``): no environment, no quota, their slots fit."""
    return (
        req.default_max_running is None
        and all(r.environment_id is None and r.tenant_quota is None for r in rows)
        and sum(r.slots for r in rows) <= req.max_slots
    )


def _plain_end(end: AttemptEnd, now: datetime) -> bool:
    """Whether ``end`` is of a running attempt, with no retry: one fenced UPDATE."""
    job = end.job
    return (
        job.state is JobState.RUNNING
        and states.can_transition(JobState.RUNNING, end.target)
        and retry.plan(job, end.target, end.error_type, now) is None
    )


def _freed(deltas: Deltas, job: Job) -> None:
    """The slots of an active ``job`` that ended, to the row of the node that claimed it."""
    if job.state in states.ACTIVE:
        key = (job.tenant_id, job.lease_owner or job.node_id or "")
        deltas[key] = deltas.get(key, 0) - job.spec.slots


def _attempt_row(job: Job, end: AttemptEnd, now: datetime) -> dict[str, object]:
    return {
        "tenant_id": job.tenant_id,
        "job_id": job.id,
        "attempt": job.attempt,
        "node_id": job.node_id,
        "state": end.target.value,
        "started_at": job.started_at,
        "ended_at": now,
        "exit_code": end.exit_code,
        "error_type": end.error_type,
        "message": end.message,
    }
