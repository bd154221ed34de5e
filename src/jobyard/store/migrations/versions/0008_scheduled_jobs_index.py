"""scheduled jobs by due time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

The claim loop asks for the earliest due time of the scheduled jobs (its timer) and
promotes the due ones; without an index that is a scan of every job, each poll
interval. A partial index holds only the scheduled jobs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WHERE = "state = 'scheduled'"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_scheduled",
        "jobs",
        ["scheduled_at"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_scheduled", table_name="jobs")
