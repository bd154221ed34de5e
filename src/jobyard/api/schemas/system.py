"""Wire models of ``/v1/system/status``: health, nodes, queue, performance, resources.

Durations are milliseconds, sizes bytes, times UTC ISO 8601.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from jobyard.executors.support import SandboxSupport
from jobyard.service.status import SystemStatus


class NodeOut(BaseModel):
    node_id: str = Field(description="The node's id (`--node-id`, `JOBYARD_NODE_ID`)")
    hostname: str
    status: Literal["active", "stale", "stopped"] = Field(
        description="`stale`: no heartbeat for 3 × the heartbeat interval (at least 10 s)"
    )
    cpu_percent: float | None = Field(
        description="Machine CPU % (the node answering the request only; null for others)"
    )
    memory_percent: float | None = Field(description="Machine memory % in use (likewise)")
    active_jobs: int = Field(description="Your jobs starting, running or cancelling on it")
    job_capacity: int = Field(description="Slots of the node")
    used_slots: int = Field(description="Slots taken by every tenant's jobs on it")
    started_at: datetime
    last_heartbeat_at: datetime


class QueueByPriority(BaseModel):
    low: int
    normal: int
    high: int
    critical: int


class QueueStatisticsOut(BaseModel):
    total_queued: int = Field(description="Your jobs waiting for a slot")
    by_priority: QueueByPriority
    scheduled: int = Field(description="Your jobs waiting for their start time")
    running: int = Field(description="Your jobs starting, running or cancelling")
    average_wait_ms: float | None = Field(
        description="Mean queued → started time of your jobs started in the last hour"
    )
    estimated_drain_ms: float | None = Field(
        description="Queued × median duration of your last 100 succeeded jobs ÷ slots of "
        "active nodes; null without history or without an active node"
    )


class OutcomeCounts(BaseModel):
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int


class PerformanceOut(BaseModel):
    since: datetime = Field(description="Start of the day (UTC midnight)")
    jobs_completed_today: int = Field(description="Your jobs that ended today, any outcome")
    by_outcome: OutcomeCounts
    average_duration_ms: float | None = Field(
        description="Mean running time of your jobs that succeeded today"
    )
    success_rate_percent: float | None = Field(
        description="Succeeded ÷ (succeeded + failed + timed out) today; cancels do not count"
    )
    throughput_per_hour: float = Field(description="Your jobs that ended in the last hour")


class ResourcesOut(BaseModel):
    total_slots: int = Field(description="Slots of active nodes")
    used_slots: int = Field(description="Slots taken by every tenant's jobs")
    memory_total_bytes: int | None = Field(description="Memory of the answering machine")
    memory_used_bytes: int | None = Field(description="In use: total − available")
    disk_free_bytes: int | None = Field(description="Free space of the data directory")


class SandboxOut(BaseModel):
    """How the answering node walls its jobs in (docs/explanation/security.md)."""

    jobs_sandboxed: bool = Field(
        description="Jobs run in a sandbox: own namespaces, an unprivileged user, only "
        "their own files"
    )
    kernel_limits: bool = Field(
        description="Memory, process and CPU limits are enforced by the kernel (cgroups)"
    )
    sandbox_unavailable: str | None = Field(None, description="Why jobs are not sandboxed")
    kernel_limits_unavailable: str | None = Field(
        None, description="Why there are no kernel limits"
    )

    @classmethod
    def of(cls, support: SandboxSupport) -> SandboxOut:
        return cls(
            jobs_sandboxed=support.sandboxed,
            kernel_limits=support.kernel_limits,
            sandbox_unavailable=support.reason or None,
            kernel_limits_unavailable=support.limits_reason or None,
        )


class SystemStatusOut(BaseModel):
    system_status: Literal["healthy", "degraded", "unhealthy"] = Field(
        description="`unhealthy`: your jobs are queued and no node is active; `degraded`: a "
        "node is stale or none is active"
    )
    timestamp: datetime
    execution_nodes: list[NodeOut]
    queue_statistics: QueueStatisticsOut
    performance_metrics: PerformanceOut
    resource_utilization: ResourcesOut
    sandbox: SandboxOut = Field(description="How the answering node's jobs are walled in")

    @classmethod
    def of(cls, s: SystemStatus, support: SandboxSupport) -> SystemStatusOut:
        p, q, r = s.performance, s.queue, s.resources
        return cls(
            system_status=s.status,
            timestamp=s.timestamp,
            execution_nodes=[
                NodeOut(
                    node_id=n.id,
                    hostname=n.hostname,
                    status=n.status,
                    cpu_percent=n.cpu_percent,
                    memory_percent=n.memory_percent,
                    active_jobs=n.active_jobs,
                    job_capacity=n.capacity,
                    used_slots=n.used_slots,
                    started_at=n.started_at,
                    last_heartbeat_at=n.last_heartbeat_at,
                )
                for n in s.nodes
            ],
            queue_statistics=QueueStatisticsOut(
                total_queued=q.total_queued,
                by_priority=QueueByPriority(**q.by_priority),
                scheduled=q.scheduled,
                running=q.running,
                average_wait_ms=q.average_wait_ms,
                estimated_drain_ms=q.estimated_drain_ms,
            ),
            performance_metrics=PerformanceOut(
                since=p.since,
                jobs_completed_today=p.jobs_completed,
                by_outcome=OutcomeCounts(**p.by_outcome),
                average_duration_ms=p.average_duration_ms,
                success_rate_percent=p.success_rate_percent,
                throughput_per_hour=p.throughput_per_hour,
            ),
            resource_utilization=ResourcesOut(
                total_slots=r.total_slots,
                used_slots=r.used_slots,
                memory_total_bytes=r.memory_total_bytes,
                memory_used_bytes=r.memory_used_bytes,
                disk_free_bytes=r.disk_free_bytes,
            ),
            sandbox=SandboxOut.of(support),
        )
