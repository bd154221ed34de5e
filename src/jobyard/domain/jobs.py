"""Job values: what a submission asks for and what a job is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from jobyard.domain.priorities import Priority
from jobyard.domain.states import TERMINAL, JobState

_T = TypeVar("_T")

DEFAULT_TENANT_ID = "default"
DEFAULT_PROJECT_ID = "default"


class ErrorType(StrEnum):
    """Why a job failed, named like Ray's ``JobErrorType``."""

    ENTRYPOINT_COMMAND_ERROR = "ENTRYPOINT_COMMAND_ERROR"
    ENTRYPOINT_COMMAND_START_ERROR = "ENTRYPOINT_COMMAND_START_ERROR"
    TIMEOUT = "TIMEOUT"
    NODE_LOST = "NODE_LOST"
    CANCELLED = "CANCELLED"
    RUNTIME_ENV_SETUP_FAILED = "RUNTIME_ENV_SETUP_FAILED"
    MEMORY_LIMIT_EXCEEDED = "MEMORY_LIMIT_EXCEEDED"


@dataclass(frozen=True, kw_only=True)
class Submitted:
    """What the submitter chose: the job's fields of a submission, before the server
    resolves its references (model, environment, folders) and batch inputs."""

    entrypoint: str | None = None  #: run through ``/bin/sh -c``
    argv: tuple[str, ...] | None = None  #: run without a shell
    name: str | None = None
    description: str | None = None
    job_type: str | None = None
    priority: Priority = Priority.NORMAL
    parameters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    scheduled_at: datetime | None = None
    idempotency_key: str | None = None
    continue_on_error: bool = False  #: notebooks: run the remaining cells after a failure
    # retries and notifications
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ("failed", "timed_out", "node_lost")
    retry_backoff_s: float = 10.0
    notifications: dict[str, Any] | None = (
        None  #: {"webhooks": [...], "emails": [...], "on": [...]}
    )


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """What only a Ray client sends (its ``runtime_env``)."""

    #: uploaded code packages: {"uri": "gcs://_ray_pkg_….zip", "role": "working_dir" |
    #: "py_module"}, unpacked into the job's directory
    packages: tuple[dict[str, str], ...] = ()
    runtime_env: dict[str, Any] | None = None  #: as the Ray client sent it (echoed back)


@dataclass(frozen=True, kw_only=True)
class ServerSet:
    """What the server sets when it accepts a job: who submitted it and where, what its
    references resolved to, its stored batch inputs, and what it retries."""

    submitted_by: str | None = None  #: the submitting key's name
    submitted_key_id: str | None = None  #: the submitting key's id
    project_id: str = DEFAULT_PROJECT_ID
    # registry, environment and data (all optional: a plain command job has none)
    model_version_id: str | None = None
    model_sha256: str | None = None
    environment_id: str | None = None
    input_folder_id: str | None = None
    output_folder_id: str | None = None
    input_bindings: tuple[dict[str, Any], ...] = ()  #: {"role", "folder_id" | "value"}
    definition_id: str | None = None
    slots: int = 1  #: the environment's CPU slots
    retry_of: str | None = None
    retry_reason: str | None = None
    inputs_sha256: str | None = None
    input_bytes: int | None = None
    items_total: int | None = None


@dataclass(frozen=True, kw_only=True)
class JobSpec(Submitted, RayOptions, ServerSet):
    """A validated submission: what the submitter chose (:class:`Submitted`), what a
    Ray client added (:class:`RayOptions`) and what the server set (:class:`ServerSet`),
    as one flat value (``spec.name``, ``spec.environment_id``). A new field is one line
    in one of the three parts, a column of the same name and its migration; the store
    maps it by itself (``store/jobs.py``)."""

    def evolve(self, **changes: Any) -> JobSpec:
        """This spec with ``changes``: :func:`dataclasses.replace` without calling
        ``__init__`` again (no field has a ``__post_init__`` check), ≈ 1.5 µs against ≈ 8
        for 35 fields; a submit makes one or two. An unknown name is a TypeError."""
        return _changed(self, SPEC_FIELDS, changes)

    def evolve_with(self, changes: dict[str, Any]) -> JobSpec:
        """:meth:`evolve` with the changes in a dict: no keyword arguments to unpack and
        pack again (≈ 1 µs less for the 17 fields a submitted job sets)."""
        return _changed(self, SPEC_FIELDS, changes)


def _changed(obj: _T, names: frozenset[str], changes: dict[str, Any]) -> _T:
    """A copy of the frozen dataclass ``obj`` (fields ``names``) with ``changes``."""
    if not names.issuperset(changes):
        unknown = ", ".join(sorted(changes.keys() - names))
        raise TypeError(f"{type(obj).__name__} has no field {unknown}")
    copy = object.__new__(type(obj))
    values = obj.__dict__.copy()
    values.update(changes)
    object.__setattr__(copy, "__dict__", values)  # frozen: set as dataclasses' __init__ does
    return copy


#: the names of JobSpec's fields
SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(JobSpec))


class PlainSpec(NamedTuple):
    """A submitted job that names nothing to resolve (no model, environment, folders,
    role bindings, batch inputs or notifications) and has no idempotency key: every
    other :class:`Submitted` field, the rest of its spec a new :class:`JobSpec`'s. A
    batch accepts such a job without building its ``JobSpec`` (≈ 8 µs of frozen objects
    a job): its row is written from these fields (``scheduled_at`` aware)."""

    entrypoint: str | None
    argv: tuple[str, ...] | None
    name: str | None
    description: str | None
    job_type: str | None
    priority: Priority
    parameters: dict[str, Any]
    metadata: dict[str, str]
    env: dict[str, str]
    timeout_s: float | None
    scheduled_at: datetime | None
    continue_on_error: bool
    max_attempts: int
    retry_on: tuple[str, ...]
    retry_backoff_s: float


#: what a plain job leaves to the server or cannot have
_NOT_PLAIN = {"idempotency_key", "notifications"}
if set(PlainSpec._fields) != {f.name for f in dataclasses.fields(Submitted)} - _NOT_PLAIN:
    raise RuntimeError("PlainSpec must have Submitted's fields but " + ", ".join(_NOT_PLAIN))


@dataclass(frozen=True, kw_only=True)
class ResourceUsage:
    """What the process tree of a job used (psutil samples)."""

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    cpu_time_s: float | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    disk_bytes: int | None = None  #: bytes in the job's output directory


@dataclass(frozen=True, kw_only=True)
class Tracking:
    """What the job reported about itself while it ran."""

    progress_percent: float | None = None
    progress_stage: str | None = None
    progress_updated_at: datetime | None = None
    records_processed: int | None = None
    total_records: int | None = None
    error_count: int = 0
    warning_count: int = 0
    items_completed: int = 0
    items_failed: int = 0


@dataclass(frozen=True, kw_only=True)
class Job:
    """One job as stored."""

    id: str
    seq: int
    tenant_id: str
    spec: JobSpec
    state: JobState
    attempt: int
    lease_epoch: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    error_type: str | None
    message: str | None
    pid: int | None
    node_id: str | None
    cancel_force: bool
    usage: ResourceUsage
    request_hash: str | None = None
    pid_create_time: float | None = None
    tracking: Tracking = field(default_factory=Tracking)
    not_before: datetime | None = None
    notified_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    def evolve(self, **changes: Any) -> Job:
        """This job with ``changes``, as :meth:`JobSpec.evolve` (no ``__post_init__``)."""
        return _changed(self, _JOB_FIELDS, changes)


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


@dataclass(frozen=True, kw_only=True)
class JobEvent:
    """One line of a job's timeline."""

    seq: int
    job_id: str
    at: datetime
    kind: str  #: "state" for transitions; later kinds add progress, cells, …
    from_state: str | None
    to_state: str | None
    message: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    """What a job listing asks for (all conditions must hold)."""

    states: frozenset[JobState] = frozenset()
    priorities: frozenset[Priority] = frozenset()
    job_type: str | None = None
    submitted_by: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    project_id: str | None = None  #: set for project-scoped keys
    model_version_ids: frozenset[str] = frozenset()  #: jobs of these model versions
    name_contains: str | None = None  #: jobs whose name contains this text (any case)
    id_prefix: str | None = None  #: jobs whose id starts with this (the CLI's short ids)
