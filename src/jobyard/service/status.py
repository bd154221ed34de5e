"""The system status as one tenant sees it, and the operators' figures behind /metrics.

Job figures of :meth:`SystemStatusService.status` are the caller's tenant's only; nodes,
slots and the machine are shared infrastructure and the same for every tenant. A node
is ``stale`` when its last heartbeat is older than 3 × ``heartbeat_interval_s`` (at
least 10 s). CPU and memory are those of the machine this process runs on: they are
reported for the local node only (another replica's machine cannot be sampled here).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import psutil

from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.domain.priorities import Priority
from jobyard.domain.states import ACTIVE, JobState
from jobyard.settings import Settings
from jobyard.store.database import Database
from jobyard.store.stats import ALL_TENANTS, NodeUsage, Scope, StatsStore
from jobyard.store.stats import Distribution as Distribution  # re-exported for the API

Health = Literal["healthy", "degraded", "unhealthy"]
NodeState = Literal["active", "stale", "stopped"]
NODE_STATUSES: tuple[NodeState, ...] = ("active", "stale", "stopped")
OUTCOMES = tuple(s.value for s in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT))
MIN_STALE_S = 10.0
WINDOW = timedelta(hours=1)  #: average wait, throughput and the /metrics distributions
MEDIAN_OF = 100  #: succeeded jobs behind the drain estimate
HISTORY_BUCKET = timedelta(minutes=2)  #: the system page's charts: one point per bucket
HISTORY_ROWS = 20_000  #: jobs read at most per chart (the newest)
DURATION_BOUNDS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LATENCY_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class Machine:
    """What psutil says about the machine this process runs on (None: unknown)."""

    cpu_percent: float | None
    memory_percent: float | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    disk_free_bytes: int | None  #: on the data directory's file system


def sample_machine(data_dir: Path) -> Machine:
    """CPU % since the previous call, memory in use (total − available), disk free."""
    mem = psutil.virtual_memory()
    try:
        free: int | None = shutil.disk_usage(data_dir).free
    except OSError:
        free = None
    return Machine(
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=mem.percent,
        memory_total_bytes=mem.total,
        memory_used_bytes=mem.total - mem.available,
        disk_free_bytes=free,
    )


@dataclass(frozen=True)
class NodeStatus:
    id: str
    hostname: str
    status: NodeState
    cpu_percent: float | None  #: local node only
    memory_percent: float | None  #: local node only
    active_jobs: int  #: the caller's jobs on the node
    capacity: int  #: slots
    used_slots: int  #: slots held by every tenant's jobs
    started_at: datetime
    last_heartbeat_at: datetime


@dataclass(frozen=True)
class QueueStatistics:
    total_queued: int
    by_priority: dict[str, int]  #: low, normal, high, critical
    scheduled: int
    running: int  #: starting, running or cancelling
    average_wait_ms: float | None  #: queued → started, jobs started in the last hour
    estimated_drain_ms: float | None  #: queued × median duration ÷ active slots


@dataclass(frozen=True)
class PerformanceMetrics:
    since: datetime  #: UTC midnight
    jobs_completed: int  #: ended since ``since``, any outcome
    by_outcome: dict[str, int]  #: succeeded, failed, timed_out, cancelled
    average_duration_ms: float | None  #: succeeded since ``since``
    success_rate_percent: float | None  #: succeeded ÷ (succeeded + failed + timed_out)
    throughput_per_hour: float  #: jobs ended in the last hour


@dataclass(frozen=True)
class ResourceUtilization:
    total_slots: int  #: of active nodes
    used_slots: int
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    disk_free_bytes: int | None


@dataclass(frozen=True)
class SystemStatus:
    status: Health
    timestamp: datetime
    nodes: list[NodeStatus]
    queue: QueueStatistics
    performance: PerformanceMetrics
    resources: ResourceUtilization


@dataclass(frozen=True)
class History:
    """The last hour in buckets: when each starts, the mean wait of the jobs started in
    it (None: none started) and how many jobs ended in it."""

    starts: list[datetime]
    average_wait_s: list[float | None]
    ended: list[int]
    bucket_s: int


@dataclass(frozen=True)
class OperatorMetrics:
    """All tenants' figures, for /metrics."""

    jobs_by_state: dict[str, int]
    queued_by_priority: dict[str, int]
    nodes_by_status: dict[str, int]
    slots_total: int
    slots_used: int
    durations: dict[str, Distribution]  #: by final state, jobs ended in the last hour
    dispatch_latency: Distribution  #: jobs started in the last hour


class SystemStatusService:
    """Reads the figures from the store on each call; time comes from ``clock`` only."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        node_id: str,
        machine: Callable[[], Machine] | None = None,
    ) -> None:
        self.stats = StatsStore(db)
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.machine = machine or (lambda: sample_machine(settings.data_dir))
        if machine is None:
            psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=max(3 * self.settings.heartbeat_interval_s, MIN_STALE_S))

    def node_state(self, node: NodeUsage, now: datetime) -> NodeState:
        if node.status == "stopped":
            return "stopped"
        return "stale" if now - node.last_heartbeat_at > self.stale_after else "active"

    def status(self, principal: Principal) -> SystemStatus:
        """The status with the job figures of the principal's tenant."""
        now = self.clock.now().astimezone(UTC)
        tenant: Scope = principal.tenant_id
        machine = self.machine()
        nodes = [self._node(n, now, machine) for n in self.stats.nodes(tenant)]
        total_slots = sum(n.capacity for n in nodes if n.status == "active")
        queue = self._queue(tenant, now, total_slots)
        fresh = any(n.status == "active" for n in nodes)
        health: Health = "healthy"
        if not fresh and queue.total_queued > 0:
            health = "unhealthy"
        elif not fresh or any(n.status == "stale" for n in nodes):
            health = "degraded"
        return SystemStatus(
            status=health,
            timestamp=now,
            nodes=nodes,
            queue=queue,
            performance=self._performance(tenant, now),
            resources=ResourceUtilization(
                total_slots=total_slots,
                used_slots=sum(n.used_slots for n in nodes),
                memory_total_bytes=machine.memory_total_bytes,
                memory_used_bytes=machine.memory_used_bytes,
                disk_free_bytes=machine.disk_free_bytes,
            ),
        )

    def _node(self, node: NodeUsage, now: datetime, machine: Machine) -> NodeStatus:
        local = node.id == self.node_id
        return NodeStatus(
            id=node.id,
            hostname=node.hostname,
            status=self.node_state(node, now),
            cpu_percent=machine.cpu_percent if local else None,
            memory_percent=machine.memory_percent if local else None,
            active_jobs=node.active_jobs,
            capacity=node.slots,
            used_slots=node.used_slots,
            started_at=node.started_at,
            last_heartbeat_at=node.last_heartbeat_at,
        )

    def _queue(self, tenant: Scope, now: datetime, total_slots: int) -> QueueStatistics:
        pending = [JobState.QUEUED, JobState.SCHEDULED, *ACTIVE]
        counts = self.stats.counts(tenant, pending)
        by_priority = {p.value: counts.get((JobState.QUEUED.value, p.value), 0) for p in Priority}
        queued = sum(by_priority.values())
        wait_s = self.stats.average_wait_s(tenant, now - WINDOW)
        median_s = self.stats.median_duration_s(tenant, MEDIAN_OF)
        drain_ms = (
            queued * median_s * 1000 / total_slots
            if median_s is not None and total_slots > 0
            else None
        )
        return QueueStatistics(
            total_queued=queued,
            by_priority=by_priority,
            scheduled=sum(n for (st, _), n in counts.items() if st == JobState.SCHEDULED.value),
            running=sum(n for (st, _), n in counts.items() if JobState(st) in ACTIVE),
            average_wait_ms=wait_s * 1000 if wait_s is not None else None,
            estimated_drain_ms=drain_ms,
        )

    def _performance(self, tenant: Scope, now: datetime) -> PerformanceMetrics:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        ended = self.stats.ended_by_state(tenant, midnight)
        by_outcome = {s: ended.get(s, 0) for s in (*OUTCOMES, JobState.CANCELLED.value)}
        decided = sum(by_outcome[s] for s in OUTCOMES)
        succeeded = by_outcome[JobState.SUCCEEDED.value]
        duration_s = self.stats.average_duration_s(tenant, midnight)
        last_hour = self.stats.ended_by_state(tenant, now - WINDOW)
        return PerformanceMetrics(
            since=midnight,
            jobs_completed=sum(by_outcome.values()),
            by_outcome=by_outcome,
            average_duration_ms=duration_s * 1000 if duration_s is not None else None,
            success_rate_percent=round(100 * succeeded / decided, 2) if decided else None,
            throughput_per_hour=float(sum(last_hour.values())) * (timedelta(hours=1) / WINDOW),
        )

    def history(self, principal: Principal) -> History:
        """Wait time and throughput of the principal's tenant over the last hour."""
        now = self.clock.now().astimezone(UTC)
        first = now - WINDOW
        n = int(WINDOW / HISTORY_BUCKET)
        starts = [first + i * HISTORY_BUCKET for i in range(n)]
        waits: list[list[float]] = [[] for _ in range(n)]
        ended = [0] * n
        tenant: Scope = principal.tenant_id

        def index(at: datetime) -> int:
            return min(n - 1, max(0, int((at - first) / HISTORY_BUCKET)))

        for at, wait_s in self.stats.recent_starts(tenant, first, HISTORY_ROWS):
            waits[index(at)].append(wait_s)
        for at in self.stats.recent_ends(tenant, first, HISTORY_ROWS):
            ended[index(at)] += 1
        return History(
            starts=starts,
            average_wait_s=[sum(w) / len(w) if w else None for w in waits],
            ended=ended,
            bucket_s=int(HISTORY_BUCKET.total_seconds()),
        )

    def metrics(self) -> OperatorMetrics:
        """Every tenant's figures (for operators; never answer a tenant with these)."""
        now = self.clock.now().astimezone(UTC)
        counts = self.stats.counts(ALL_TENANTS)
        by_state = {s.value: 0 for s in JobState}
        for (state, _), n in counts.items():
            by_state[state] = by_state.get(state, 0) + n
        nodes = self.stats.nodes(ALL_TENANTS)
        node_states = [self.node_state(n, now) for n in nodes]
        return OperatorMetrics(
            jobs_by_state=by_state,
            queued_by_priority={
                p.value: counts.get((JobState.QUEUED.value, p.value), 0) for p in Priority
            },
            nodes_by_status={s: node_states.count(s) for s in NODE_STATUSES},
            slots_total=sum(
                n.slots for n, st in zip(nodes, node_states, strict=True) if st == "active"
            ),
            slots_used=sum(n.used_slots for n in nodes),
            durations=self.stats.duration_distributions(
                ALL_TENANTS, now - WINDOW, DURATION_BOUNDS_S
            ),
            dispatch_latency=self.stats.wait_distribution(
                ALL_TENANTS, now - WINDOW, LATENCY_BOUNDS_S
            ),
        )
