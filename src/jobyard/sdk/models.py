"""Client-side models of the ``/v1`` API (see ``docs/reference/api.md``).

They are the SDK's own copy, independent of the server. Unknown fields are kept
(``extra="allow"``) so that a newer server with more fields still parses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Statuses a job does not leave on its own.
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
#: Every status of the API, in lifecycle order.
STATUSES: tuple[str, ...] = (
    "scheduled",
    "queued",
    "starting",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Model):
    """What the job's process tree used."""

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    cpu_time_s: float | None = None


class Job(_Model):
    """A job as the server reports it."""

    id: str
    status: str
    name: str | None = None
    description: str | None = None
    job_type: str | None = None
    priority: str = "normal"
    entrypoint: str | None = None
    argv: list[str] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = None
    scheduled_at: datetime | None = None
    submitted_by: str | None = None
    attempt: int = 0
    exit_code: int | None = None
    error_type: str | None = None
    message: str | None = None
    node_id: str | None = None
    pid: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    queue_time_ms: int | None = None
    elapsed_time_ms: int | None = None
    usage: Usage | None = None
    retry_of: str | None = None  #: the job this one is a retry of
    retry_reason: str | None = None
    retries: list[str] | None = None  #: retries of this job, oldest first (``get`` only)
    # what a model job uses: ids, and names (``get`` only)
    model_version_id: str | None = None
    environment_id: str | None = None
    input_folder_id: str | None = None
    output_folder_id: str | None = None
    model: str | None = None  #: ``name:version``
    environment: str | None = None
    input_folder: str | None = None
    output_folder: str | None = None
    #: ``{"role", "folder_id", "folder"}`` or ``{"role", "value"}`` (``get`` only)
    role_bindings: list[dict[str, Any]] | None = None
    model_sha256: str | None = None  #: of the model version's artifact
    definition_id: str | None = None  #: the job definition that made this job
    submission_id: str | None = None
    continue_on_error: bool = False
    slots: int = 1
    max_attempts: int = 1
    retry_on: list[str] = Field(default_factory=list)
    input_bytes: int | None = None
    # while the job waits (``get`` only): why, where in the queue, and when it may start
    pending_reason: str | None = None
    queue_position: int | None = None
    estimated_start: datetime | None = None
    estimate_note: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended (succeeded, failed, timed_out or cancelled)."""
        return self.status in TERMINAL_STATUSES


class JobSummary(_Model):
    """Counts of the jobs matching a list's filters except ``status``."""

    total: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


class JobPage(_Model):
    """One page of ``GET /v1/jobs``, newest first."""

    items: list[Job] = Field(default_factory=list)
    next_cursor: str | None = None
    summary: JobSummary = Field(default_factory=JobSummary)


class BatchItem(_Model):
    """One job of :meth:`Client.submit_batch`: its id and state, or its error."""

    index: int
    status_code: int  #: 201 created, 200 found by its submission_id, else the error's
    id: str | None = None
    status: str | None = None
    error: dict[str, Any] | None = None  #: ``{code, message, details}``

    @property
    def ok(self) -> bool:
        return self.error is None


class JobBatch(_Model):
    """The answer of :meth:`Client.submit_batch`, in the order the jobs were given."""

    items: list[BatchItem] = Field(default_factory=list)
    created: int = 0
    existing: int = 0
    failed: int = 0


class JobEvent(_Model):
    """One entry of a job's timeline."""

    seq: int
    at: datetime
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    message: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LogChunk(_Model):
    """Part of a job's log and where it sits in the log (byte offsets)."""

    text: str
    offset: int
    next_offset: int


class Folder(_Model):
    """A folder: a named place to exchange files with jobs."""

    id: str
    name: str
    description: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    file_count: int = 0
    total_bytes: int = 0


class FolderFile(_Model):
    """One file of a folder (``path`` is relative, ``/``-separated)."""

    path: str
    size: int
    sha256: str
    updated_at: datetime | None = None


# ---- registry: models, model versions, environments ----------------------------------


class ModelVersionInfo(_Model):
    """A version as listed in :class:`Model` (``Client.model(ref).versions``)."""

    id: str | None = None
    version: str
    kind: str
    created_at: datetime | None = None
    deprecated: bool = False


class Model(_Model):
    """A registered model (a source): mutable metadata; its versions are immutable."""

    id: str
    name: str
    description: str | None = None
    expected_interval_minutes: int | None = None
    retention_hours: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    versions: list[ModelVersionInfo] = Field(default_factory=list)  #: newest first


class InputRole(_Model):
    """An input a model version expects (bound when a job is set up)."""

    role: str
    kind: str | None = None
    metric: str | None = None
    required: bool = True


class OutputRole(_Model):
    """An output a model version produces."""

    role: str
    metric: str | None = None
    unit: str | None = None
    required: bool = False


class Artifact(_Model):
    """A version's stored file: its original name, sha256 and size."""

    name: str
    sha256: str
    size: int
    archive: bool = False  #: a zip of a directory


class ModelVersion(_Model):
    """An immutable version of a model."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    id: str
    model: str  #: the model's name
    model_id: str | None = None
    ref: str | None = None  #: ``NAME:VERSION``
    version: str
    kind: str
    entrypoint: str | None = None
    description: str | None = None
    artifact: Artifact | None = None
    input_roles: list[InputRole] = Field(default_factory=list)
    output_roles: list[OutputRole] = Field(default_factory=list)
    parameters_schema: dict[str, Any] | None = None
    default_parameters: dict[str, Any] = Field(default_factory=dict)
    default_environment: str | None = None  #: environment id
    deprecated: bool = False
    created_at: datetime | None = None


class Environment(_Model):
    """An environment configuration: env vars, pip requirements, files, resources."""

    id: str
    name: str
    description: str | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)
    pip_requirements: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    cpu_slots: int = 1
    memory_limit_mb: int | None = None
    max_concurrent_jobs: int = 1
    network: str = "full"  #: "full": the host's network; "none": a loopback interface only
    created_at: datetime | None = None
    updated_at: datetime | None = None


# ---- system status ---------------------------------------------------------------------


class NodeStatus(_Model):
    """An execution node of :class:`SystemStatus`."""

    node_id: str
    hostname: str
    status: str  #: ``active``, ``stale`` (no recent heartbeat) or ``stopped``
    cpu_percent: float | None = None  #: the answering node's machine only
    memory_percent: float | None = None  #: likewise
    active_jobs: int = 0  #: the caller's jobs starting, running or cancelling on it
    job_capacity: int = 0  #: slots of the node
    used_slots: int = 0  #: slots taken by every tenant's jobs on it
    started_at: datetime | None = None
    last_heartbeat_at: datetime | None = None


class QueueByPriority(_Model):
    """Queued jobs by priority."""

    low: int = 0
    normal: int = 0
    high: int = 0
    critical: int = 0


class QueueStatistics(_Model):
    """The caller's jobs that wait or run."""

    total_queued: int = 0
    by_priority: QueueByPriority = Field(default_factory=QueueByPriority)
    scheduled: int = 0  #: waiting for their start time
    running: int = 0  #: starting, running or cancelling
    average_wait_ms: float | None = None  #: queued → started, jobs started in the last hour
    estimated_drain_ms: float | None = None  #: None without history or an active node


class OutcomeCounts(_Model):
    """Jobs that ended today, by outcome."""

    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0


class PerformanceMetrics(_Model):
    """The caller's throughput: today (UTC) and the last hour."""

    since: datetime | None = None
    jobs_completed_today: int = 0
    by_outcome: OutcomeCounts = Field(default_factory=OutcomeCounts)
    average_duration_ms: float | None = None
    success_rate_percent: float | None = None  #: cancels do not count
    throughput_per_hour: float = 0.0


class ResourceUtilization(_Model):
    """Slots of the active nodes; memory and disk of the answering machine."""

    total_slots: int = 0
    used_slots: int = 0
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    disk_free_bytes: int | None = None


class SandboxStatus(_Model):
    """How the answering node walls its jobs in."""

    jobs_sandboxed: bool = False
    kernel_limits: bool = False
    sandbox_unavailable: str | None = None  #: why jobs are not sandboxed
    kernel_limits_unavailable: str | None = None


class SystemStatus(_Model):
    """``GET /v1/system/status``: job figures are the caller's tenant's; nodes, slots and
    the machine are shared."""

    system_status: str  #: ``healthy``, ``degraded`` or ``unhealthy``
    timestamp: datetime
    execution_nodes: list[NodeStatus] = Field(default_factory=list)
    queue_statistics: QueueStatistics = Field(default_factory=QueueStatistics)
    performance_metrics: PerformanceMetrics = Field(default_factory=PerformanceMetrics)
    resource_utilization: ResourceUtilization = Field(default_factory=ResourceUtilization)
    sandbox: SandboxStatus | None = None  #: None from a server that does not report it
