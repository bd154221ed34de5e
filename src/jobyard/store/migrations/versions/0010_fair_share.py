"""fair share between tenants: weights, usage per tenant and node, a queue per tenant

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

``tenants.fair_share_weight`` (null: weight 1); ``tenant_usage`` holds each tenant's
decayed usage in slot-seconds per node (the node that claimed or ended its jobs), see
``domain/fairshare.py``; the jobs that run now are counted in from the start, so their
ends do not leave a negative count. ``ix_jobs_tenant_queue`` reads the head of one
tenant's queue in queue order (partial: queued jobs only).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("fair_share_weight", sa.Integer(), nullable=True))
    op.create_table(
        "tenant_usage",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("usage_s", sa.Float(), nullable=False),
        sa.Column("running_slots", sa.Integer(), nullable=False),
        sa.Column("usage_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "node_id", name=op.f("pk_tenant_usage")),
    )
    op.create_index(
        "ix_jobs_tenant_queue",
        "jobs",
        ["tenant_id", "sort_key", "seq"],
        unique=False,
        sqlite_where=sa.text("state = 'queued'"),
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.execute(
        sa.text(
            "INSERT INTO tenant_usage (tenant_id, node_id, usage_s, running_slots, usage_at) "
            "SELECT tenant_id, lease_owner, 0.0, SUM(slots), :now FROM jobs "
            "WHERE state IN ('starting', 'running', 'cancelling') AND lease_owner IS NOT NULL "
            "GROUP BY tenant_id, lease_owner"
        ).bindparams(now=time.time())
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_queue", table_name="jobs")
    op.drop_table("tenant_usage")
    # ALTER TABLE … DROP COLUMN in place (SQLite >= 3.35): a batch copy of ``tenants``
    # would fail on the foreign keys that point at it
    op.drop_column("tenants", "fair_share_weight")
