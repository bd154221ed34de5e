"""tracking retries notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "job_attempts",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_attempts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_job_attempts")),
        sa.UniqueConstraint("job_id", "attempt", name=op.f("uq_job_attempts_job_id_attempt")),
    )
    op.create_table(
        "job_items",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_items_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "idx", name=op.f("pk_job_items")),
    )
    op.create_table(
        "job_samples",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("disk_bytes", sa.BigInteger(), nullable=True),
        sa.Column("io_read_ops", sa.BigInteger(), nullable=True),
        sa.Column("io_write_ops", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_samples_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_job_samples")),
    )
    with op.batch_alter_table("job_samples", schema=None) as batch_op:
        batch_op.create_index("ix_job_samples_job_id_seq", ["job_id", "seq"], unique=False)

    op.create_table(
        "job_warnings",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_warnings_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "type", name=op.f("pk_job_warnings")),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_notification_deliveries_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_notification_deliveries_job_id", ["job_id"], unique=False)
        batch_op.create_index(
            "ix_notification_deliveries_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )

    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("retry_on", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("notifications", sa.JSON(), nullable=True))

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("retry_on", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("retry_backoff_s", sa.Float(), server_default="10", nullable=False)
        )
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retry_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("retry_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("notifications", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("job_token_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("progress_percent", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("progress_stage", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("progress_updated_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("records_processed", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("total_records", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("error_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("warning_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("items_total", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("items_completed", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("items_failed", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("input_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("io_read_ops", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("io_write_ops", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("disk_bytes", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_jobs_notified_at_state", ["notified_at", "state"], unique=False)
        batch_op.create_index("ix_jobs_retry_of", ["retry_of"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_retry_of")
        batch_op.drop_index("ix_jobs_notified_at_state")
        batch_op.drop_column("disk_bytes")
        batch_op.drop_column("io_write_ops")
        batch_op.drop_column("io_read_ops")
        batch_op.drop_column("inputs_sha256")
        batch_op.drop_column("input_bytes")
        batch_op.drop_column("items_failed")
        batch_op.drop_column("items_completed")
        batch_op.drop_column("items_total")
        batch_op.drop_column("warning_count")
        batch_op.drop_column("error_count")
        batch_op.drop_column("total_records")
        batch_op.drop_column("records_processed")
        batch_op.drop_column("progress_updated_at")
        batch_op.drop_column("progress_stage")
        batch_op.drop_column("progress_percent")
        batch_op.drop_column("job_token_hash")
        batch_op.drop_column("notified_at")
        batch_op.drop_column("notifications")
        batch_op.drop_column("retry_reason")
        batch_op.drop_column("retry_of")
        batch_op.drop_column("not_before")
        batch_op.drop_column("retry_backoff_s")
        batch_op.drop_column("retry_on")
        batch_op.drop_column("max_attempts")

    with op.batch_alter_table("job_definitions", schema=None) as batch_op:
        batch_op.drop_column("notifications")
        batch_op.drop_column("retry_on")
        batch_op.drop_column("max_attempts")

    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_deliveries_status_next_attempt_at")
        batch_op.drop_index("ix_notification_deliveries_job_id")

    op.drop_table("notification_deliveries")
    op.drop_table("job_warnings")
    with op.batch_alter_table("job_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_job_samples_job_id_seq")

    op.drop_table("job_samples")
    op.drop_table("job_items")
    op.drop_table("job_attempts")
