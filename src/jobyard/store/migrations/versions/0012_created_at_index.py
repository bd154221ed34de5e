"""list pages and counts by creation time read an index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

``GET /v1/jobs?created_from=…&created_to=…`` had no index of ``created_at``: its counts
by state read every job of the tenant (≈ 0.2–0.4 s per 1,000,000 jobs), and a page of
old jobs walked all newer ones in seq order. ``(tenant_id, created_at, state, seq)``:
the range is read from the index alone, for the page's seqs (sorted there) and for the
counts, in time proportional to the jobs in the range. One more b-tree per insert
(≈ 15 µs on SQLite); on SQLite a change of state also rewrites its entry.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_tenant_id_created_at_state_seq",
        "jobs",
        ["tenant_id", "created_at", "state", "seq"],
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_id_created_at_state_seq", table_name="jobs")
