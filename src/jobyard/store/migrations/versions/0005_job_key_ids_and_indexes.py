"""key ids on jobs and indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index("ix_job_events_tenant_id_seq", ["tenant_id", "seq"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_key_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_jobs_job_type_ended_at", ["job_type", "ended_at"], unique=False)
        batch_op.create_index("ix_jobs_tenant_id_ended_at", ["tenant_id", "ended_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_ended_at")
        batch_op.drop_index("ix_jobs_job_type_ended_at")
        batch_op.drop_column("submitted_key_id")

    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_tenant_id_seq")
