"""The schema as SQLAlchemy Core tables (created only through Alembic migrations).

Every tenant-owned table has ``tenant_id``; ``tenants`` is the tenant itself and
``nodes`` describes infrastructure shared by all tenants.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobyard.domain.states import JobState
from jobyard.store.types import UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # quotas (null: the server's default)
    sa.Column("max_running_jobs", sa.Integer),
    sa.Column("max_queued_jobs", sa.Integer),
    sa.Column("max_storage_bytes", sa.BigInteger),
    sa.Column("max_log_bytes", sa.BigInteger),
    # fair share between tenants (migration 0010; null: weight 1)
    sa.Column("fair_share_weight", sa.Integer),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),  #: "default" in every tenant
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor_key_id", sa.String(64)),
    sa.Column("actor_name", sa.String(200)),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300)),
    sa.Column("details", sa.JSON(none_as_null=True), nullable=False),
    sa.Index("ix_audit_log_tenant_id_seq", "tenant_id", "seq"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public key id, part of the key
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("project_id", sa.String(64)),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_used_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("revoked_at", UtcDateTime),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("last_heartbeat_at", UtcDateTime, nullable=False),
)


#: the partial indexes and their condition; PostgreSQL's ``WHERE`` is set by
#: :func:`complete_for_postgresql`: naming it here (``postgresql_where=``) would load
#: SQLAlchemy's PostgreSQL dialect (≈ 2.3 MB) into every server, those on SQLite too
_PARTIAL: list[tuple[sa.Index, str]] = []


def _partial(name: str, where: str, *columns: str, unique: bool = False) -> sa.Index:
    """An index of the rows that meet ``where`` (SQLite and PostgreSQL)."""
    index = sa.Index(name, *columns, unique=unique, sqlite_where=sa.text(where))
    _PARTIAL.append((index, where))
    return index


def complete_for_postgresql() -> None:
    """Give the partial indexes their PostgreSQL ``WHERE``; called for every engine on
    PostgreSQL. The migrations create the indexes; the tables describe them."""
    for index, where in _PARTIAL:
        index.dialect_options["postgresql"]["where"] = sa.text(where)


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, server_default="default"),
    # what was asked
    sa.Column("name", sa.String(200)),
    sa.Column("description", sa.Text),
    sa.Column("job_type", sa.String(100)),
    sa.Column("priority", sa.String(10), nullable=False),
    sa.Column("entrypoint", sa.Text),
    sa.Column("argv", sa.JSON(none_as_null=True)),
    sa.Column("parameters", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("metadata", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("env", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("timeout_s", sa.Float),
    sa.Column("scheduled_at", UtcDateTime),
    sa.Column("submitted_by", sa.String(200)),
    sa.Column("submitted_key_id", sa.String(64)),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("request_hash", sa.String(64)),
    # where it is
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("sort_key", sa.Float, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_expires_at", UtcDateTime),
    sa.Column("cancel_force", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("queued_at", UtcDateTime),
    sa.Column("started_at", UtcDateTime),
    sa.Column("ended_at", UtcDateTime),
    # what it runs with (registry, environment, data)
    sa.Column("model_version_id", sa.String(36)),
    sa.Column("model_sha256", sa.String(64)),
    sa.Column("environment_id", sa.String(36)),
    sa.Column("input_folder_id", sa.String(36)),
    sa.Column("output_folder_id", sa.String(36)),
    sa.Column("input_bindings", sa.JSON(none_as_null=True)),
    sa.Column("definition_id", sa.String(36)),
    sa.Column("continue_on_error", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("slots", sa.Integer, nullable=False, server_default="1"),
    sa.Column("packages", sa.JSON(none_as_null=True)),
    sa.Column("runtime_env", sa.JSON(none_as_null=True)),
    # retries and notifications
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("retry_on", sa.JSON(none_as_null=True)),
    sa.Column("retry_backoff_s", sa.Float, nullable=False, server_default="10"),
    sa.Column("not_before", UtcDateTime),
    sa.Column("retry_of", sa.String(36)),
    sa.Column("retry_reason", sa.Text),
    sa.Column("notifications", sa.JSON(none_as_null=True)),
    sa.Column("notified_at", UtcDateTime),
    sa.Column("job_token_hash", sa.String(64)),
    # what the job reports (progress, records, items)
    sa.Column("progress_percent", sa.Float),
    sa.Column("progress_stage", sa.String(200)),
    sa.Column("progress_updated_at", UtcDateTime),
    sa.Column("records_processed", sa.BigInteger),
    sa.Column("total_records", sa.BigInteger),
    sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("warning_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_total", sa.Integer),
    sa.Column("items_completed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("input_bytes", sa.BigInteger),
    sa.Column("inputs_sha256", sa.String(64)),
    # how it went
    sa.Column("node_id", sa.String(64)),
    sa.Column("pid", sa.Integer),
    sa.Column("pid_create_time", sa.Float),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error_type", sa.String(64)),
    sa.Column("message", sa.Text),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("rss_bytes", sa.BigInteger),
    sa.Column("peak_rss_bytes", sa.BigInteger),
    sa.Column("cpu_time_s", sa.Float),
    sa.Column("io_read_ops", sa.BigInteger),
    sa.Column("io_write_ops", sa.BigInteger),
    sa.Column("disk_bytes", sa.BigInteger),
    _partial("ix_jobs_queue", "state = 'queued'", "sort_key", "seq"),
    # one tenant's queue, for fair share between tenants (migration 0010)
    _partial("ix_jobs_tenant_queue", "state = 'queued'", "tenant_id", "sort_key", "seq"),
    _partial(
        "uq_jobs_tenant_id_idempotency_key",
        "idempotency_key IS NOT NULL",
        "tenant_id",
        "idempotency_key",
        unique=True,
    ),
    sa.Index("ix_jobs_tenant_id_seq", "tenant_id", "seq"),
    # list pages filtered by state, job type or submitter, newest first (seq explicit
    # for PostgreSQL; SQLite appends the rowid anyway); the state one also serves counts
    sa.Index("ix_jobs_tenant_id_state_seq", "tenant_id", "state", "seq"),
    _partial(
        "ix_jobs_tenant_id_job_type_seq", "job_type IS NOT NULL", "tenant_id", "job_type", "seq"
    ),
    # the submitter's also holds the state: its counts read the index only (migration 0011)
    sa.Index(
        "ix_jobs_tenant_id_submitted_by_seq_state", "tenant_id", "submitted_by", "seq", "state"
    ),
    # time ranges of the list and their counts (migration 0012)
    sa.Index("ix_jobs_tenant_id_created_at_state_seq", "tenant_id", "created_at", "state", "seq"),
    # partial (migration 0007): a row is only in the indexes whose queries can match it,
    # so a plain submit updates few b-trees; their queries imply the condition
    _partial("ix_jobs_leased", "lease_owner IS NOT NULL", "lease_owner", "state"),
    _partial(
        "ix_jobs_environment_id_state", "environment_id IS NOT NULL", "environment_id", "state"
    ),
    _partial("ix_jobs_model_version_id", "model_version_id IS NOT NULL", "model_version_id"),
    _partial("ix_jobs_retry_of", "retry_of IS NOT NULL", "retry_of"),
    _partial("ix_jobs_tenant_id_ended_at", "ended_at IS NOT NULL", "tenant_id", "ended_at"),
    _partial("ix_jobs_job_type_ended_at", "ended_at IS NOT NULL", "job_type", "ended_at"),
    _partial("ix_jobs_unnotified", "notified_at IS NULL AND ended_at IS NOT NULL", "state", "seq"),
    # the claim loop's timer: the earliest due scheduled job (migration 0008)
    _partial("ix_jobs_scheduled", "state = 'scheduled'", "scheduled_at"),
)

#: jobs per tenant, project, state, priority and job type ('' for none), kept by
#: database triggers on ``jobs`` (migration 0006) in the transaction of every insert,
#: change and delete; a count is the sum over ``shard`` (on PostgreSQL each backend adds
#: to rows of its own, shard = its pid (migration 0015), so writers never wait for each
#: other; the upkeep folds the rows of gone backends into shard 0; SQLite: 0)
job_counts = sa.Table(
    "job_counts",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(20), primary_key=True),
    sa.Column("priority", sa.String(10), primary_key=True),
    sa.Column("job_type", sa.String(100), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

#: jobs per tenant, hour of ``created_at`` (UTC), project and submitter ('' for none),
#: one column per state, kept by triggers beside ``job_counts`` (migration 0014): a
#: time range's or a submitter's counts sum whole hours; ``min_seq``/``max_seq`` bound
#: the seqs ever counted in the row (a time range's page walks seq between them). Sharded
#: on PostgreSQL as ``job_counts`` is
HOUR_STATES = tuple(s.value for s in JobState)
job_hour_counts = sa.Table(
    "job_hour_counts",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("hour", UtcDateTime, primary_key=True),
    sa.Column("project_id", sa.String(64), primary_key=True),
    sa.Column("submitted_by", sa.String(200), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("min_seq", sa.Integer, nullable=False),
    sa.Column("max_seq", sa.Integer, nullable=False),
    *(sa.Column(s, sa.BigInteger, nullable=False) for s in HOUR_STATES),
    sa.Index("ix_job_hour_counts_tenant_id_submitted_by_hour", "tenant_id", "submitted_by", "hour"),
)

#: fair share (migration 0010): each tenant's decayed usage in slot-seconds, kept by
#: each node for the slots it claimed and ended (one row per tenant and node, so nodes
#: never wait for each other on it); a tenant's usage is the sum of its rows, see
#: ``domain/fairshare.py``
tenant_usage = sa.Table(
    "tenant_usage",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("usage_s", sa.Float, nullable=False),  #: slot-seconds, decayed, as of usage_at
    sa.Column("running_slots", sa.Integer, nullable=False),  #: held since usage_at
    sa.Column("usage_at", sa.Float, nullable=False),  #: epoch seconds
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("from_state", sa.String(20)),
    sa.Column("to_state", sa.String(20)),
    sa.Column("message", sa.Text),
    sa.Column("data", sa.JSON(none_as_null=True), nullable=False),
    sa.Index("ix_job_events_job_id_seq", "job_id", "seq"),
    sa.Index("ix_job_events_tenant_id_seq", "tenant_id", "seq"),
)


models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("expected_interval_minutes", sa.Integer),
    sa.Column("retention_hours", sa.Integer),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("model_id", sa.String(36), sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("entrypoint", sa.Text),
    sa.Column("artifact_sha256", sa.String(64)),
    sa.Column("artifact_name", sa.String(255)),
    sa.Column("artifact_size", sa.BigInteger),
    sa.Column("artifact_is_archive", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("input_roles", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("output_roles", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("parameters_schema", sa.JSON(none_as_null=True)),
    sa.Column("default_parameters", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("default_environment_id", sa.String(36)),
    sa.Column("deprecated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("model_id", "version"),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("env_vars", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("pip_requirements", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("files", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("cpu_slots", sa.Integer, nullable=False, server_default="1"),
    sa.Column("memory_limit_mb", sa.Integer),
    sa.Column("max_concurrent_jobs", sa.Integer, nullable=False, server_default="1"),
    sa.Column("network", sa.String(16), nullable=False, server_default="full"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

folders = sa.Table(
    "folders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

folder_files = sa.Table(
    "folder_files",
    metadata,
    sa.Column(
        "folder_id",
        sa.String(36),
        sa.ForeignKey("folders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

job_definitions = sa.Table(
    "job_definitions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False, server_default="default"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column(
        "model_version_id", sa.String(36), sa.ForeignKey("model_versions.id"), nullable=False
    ),
    sa.Column("role_bindings", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("default_parameters", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("environment_id", sa.String(36)),
    sa.Column("output_folder_id", sa.String(36)),
    sa.Column("priority", sa.String(10), nullable=False, server_default="normal"),
    sa.Column("timeout_s", sa.Float),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("schedule", sa.String(100)),
    sa.Column("next_run_at", UtcDateTime),
    sa.Column("last_run_at", UtcDateTime),
    sa.Column("last_job_id", sa.String(36)),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("retry_on", sa.JSON(none_as_null=True)),
    sa.Column("notifications", sa.JSON(none_as_null=True)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_job_definitions_active_next_run_at", "active", "next_run_at"),
)

job_artifacts = sa.Table(
    "job_artifacts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("record_count", sa.Integer),
    sa.Column("role", sa.String(100)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("job_id", "path"),
)


job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("node_id", sa.String(64)),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime),
    sa.Column("ended_at", UtcDateTime, nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error_type", sa.String(64)),
    sa.Column("message", sa.Text),
    sa.UniqueConstraint("job_id", "attempt"),
)

job_items = sa.Table(
    "job_items",
    metadata,
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

job_warnings = sa.Table(
    "job_warnings",
    metadata,
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("type", sa.String(100), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_message", sa.Text),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

job_samples = sa.Table(
    "job_samples",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("rss_bytes", sa.BigInteger),
    sa.Column("disk_bytes", sa.BigInteger),
    sa.Column("io_read_ops", sa.BigInteger),
    sa.Column("io_write_ops", sa.BigInteger),
    sa.Index("ix_job_samples_job_id_seq", "job_id", "seq"),
)

notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("response_status", sa.Integer),
    sa.Column("payload", sa.JSON(none_as_null=True), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_notification_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_notification_deliveries_job_id", "job_id"),
)
