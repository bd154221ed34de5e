"""The schema as SQLAlchemy Core tables (created only through Alembic migrations).

Every tenant-owned table has ``tenant_id``; ``tenants`` is the tenant itself and
``nodes`` describes infrastructure shared by all tenants.
"""

from __future__ import annotations

import sqlalchemy as sa

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
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public key id, part of the key
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
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

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    # what was asked
    sa.Column("name", sa.String(200)),
    sa.Column("description", sa.Text),
    sa.Column("job_type", sa.String(100)),
    sa.Column("priority", sa.String(10), nullable=False),
    sa.Column("entrypoint", sa.Text),
    sa.Column("argv", sa.JSON),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("env", sa.JSON, nullable=False),
    sa.Column("timeout_s", sa.Float),
    sa.Column("scheduled_at", UtcDateTime),
    sa.Column("submitted_by", sa.String(200)),
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
    sa.Index(
        "ix_jobs_queue",
        "sort_key",
        "seq",
        sqlite_where=sa.text("state = 'queued'"),
        postgresql_where=sa.text("state = 'queued'"),
    ),
    sa.Index(
        "uq_jobs_tenant_id_idempotency_key",
        "tenant_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.Index("ix_jobs_tenant_id_seq", "tenant_id", "seq"),
    sa.Index("ix_jobs_tenant_id_state", "tenant_id", "state"),
    sa.Index("ix_jobs_state_lease_owner", "state", "lease_owner"),
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
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_job_events_job_id_seq", "job_id", "seq"),
)
