"""Server settings: built once by the entry point and passed down, never global."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "JOBYARD_"


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory: ``$JOBYARD_HOME`` or ``./.jobyard``."""
    env = os.environ if environ is None else environ
    return Path(env.get("JOBYARD_HOME") or ".jobyard")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``jobyard serve`` can be told. Units are part of the names."""

    data_dir: Path = field(default_factory=default_home)
    database_url: str | None = None  #: default: SQLite file ``<data_dir>/jobyard.db``
    storage_url: str | None = None  #: fsspec URL of folders/blobs; default ``<data_dir>/storage``
    max_upload_bytes: int = 1024 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  #: URL given to jobs and clients; default from host/port
    #: jobs run at once; 0 with the Ray executor: as many as the cluster has CPUs
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    executor: str = "local"  #: local, or ray (jobs run as Ray jobs on ``ray_address``)
    ray_address: str | None = None  #: the Ray cluster's dashboard URL, http://HEAD:8265
    #: a Ray cluster that does not answer for this long has lost its running jobs (NODE_LOST)
    ray_lost_after_s: float = 10.0
    node_id: str | None = None  #: default: kept in ``<data_dir>/node_id``
    run_dispatcher: bool = True  #: False: API only
    run_api: bool = True  #: False: worker only (no HTTP server)
    #: attempt logs also on the storage, for nodes that share it (docs/how-to/nodes.md);
    #: None: when ``storage_url`` is set
    share_logs: bool | None = None
    log_sync_interval_s: float = 1.0  #: how often a running job's log is copied there
    heartbeat_interval_s: float = 2.0
    #: how long a lease lasts without renewal; must exceed ``outage_tolerance_s`` (see
    #: docs/explanation/reliability.md, "Store outages")
    lease_ttl_s: float = 45.0
    #: how long running jobs outlive a database outage: a node that could not renew its
    #: leases for this long stops its jobs (self-fencing)
    outage_tolerance_s: float = 35.0
    poll_interval_s: float = 1.0
    stop_grace_s: float = 10.0
    aging_step_s: float = 300.0
    sample_interval_s: float = 1.0
    reap_interval_s: float = 5.0
    log_tail_lines: int = 10
    upkeep_interval_s: float = 10.0  #: cron schedules, retention
    # notifications
    webhook_secret: str | None = field(default=None, repr=False)  #: default: kept in the data dir
    #: signs the dashboard's sessions; default: kept in the data dir (``web_secret``)
    web_secret: str | None = field(default=None, repr=False)
    webhook_allow: str = ""  #: CIDRs/hosts webhooks may reach although private (comma-separated)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "jobyard@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    notify_interval_s: float = 1.0
    metrics_public: bool = True  #: False: /metrics needs an admin key of the default tenant
    # limits (a tenant's own quota columns override the *_default values)
    max_running_jobs_default: int | None = None  #: per tenant; None: only node slots limit
    #: fair share between tenants: the half-life of the usage it compares (seconds; 0:
    #: only the slots held now count), see domain/fairshare.py
    fair_share_half_life_s: float = 600.0
    max_queued_jobs_default: int | None = None  #: per tenant
    max_storage_bytes_default: int | None = None  #: per tenant: folders and results
    max_log_bytes_default: int = 100 * 1024 * 1024  #: per job attempt; beyond, truncated
    run_as_user: str | None = None  #: jobs run as this user when the server runs as root
    sandbox: str = "auto"  #: jobs in a sandbox: auto (where the host allows it), on (required), off
    allow_unsandboxed_jobs: bool = False  #: allow several tenants although jobs are not sandboxed
    sandbox_read_only: str = ""  #: more paths sandboxed jobs see read-only (comma-separated)
    job_pids_max: int = 1024  #: processes and threads one sandboxed job may have at once
    rate_limit_per_s: float = 10_000.0  #: requests per API key per second (burst: twice that)
    log_level: str = "info"  #: debug, info, warning, error
    log_format: str = "text"  #: text, or json (one object per line, for a log collector)
    access_log: bool = True  #: one line per HTTP request (logger ``jobyard.access``)

    def __post_init__(self) -> None:
        # one absolute data directory from the start: jobs, their sandbox and PYTHONPATH
        # entries get absolute paths, whatever the current directory
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'jobyard.db').resolve()}"

    @property
    def storage(self) -> str:
        if self.storage_url:
            return self.storage_url
        return str((self.data_dir / "storage").resolve())

    @property
    def logs_shared(self) -> bool:
        """Whether attempt logs are kept on the storage too (every node reads them)."""
        return self.storage_url is not None if self.share_logs is None else self.share_logs

    @property
    def api_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``JOBYARD_*`` variables (``JOBYARD_HOME`` is the data dir),
        then ``overrides`` that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"data_dir": default_home(env)}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or f.name == "data_dir":
                continue
            values[f.name] = _coerce(f.type, raw)
        base = cls(**values)
        return base.with_(**overrides)


def _coerce(type_name: Any, raw: str) -> Any:
    text = str(type_name)
    if "bool" in text:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if "int" in text and "float" not in text:
        return int(raw)
    if "float" in text:
        return float(raw)
    if "Path" in text:
        return Path(raw)
    return raw
