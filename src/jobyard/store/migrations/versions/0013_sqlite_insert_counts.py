"""SQLite: the store counts a new job in ``job_counts``, not an insert trigger

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

An ``AFTER INSERT`` trigger on SQLite costs each inserted row the trigger's sub-program
(≈ 2–4 µs of a 1,000-job batch's ≈ 60 µs a job, with a ``WHEN`` that is false too), so the
store adds the counts of the jobs it inserts itself, once per key of a statement
(``store/counts.py``). Updates and deletes are still counted by their triggers.
PostgreSQL is unchanged: there a job and its first event are inserted in one statement
and its insert trigger counts them.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER tr_jobs_count_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # the trigger as migration 0006 created it
        created = importlib.import_module(
            "jobyard.store.migrations.versions.0006_job_counts_and_list_indexes"
        )
        op.execute(created._SQLITE_TRIGGERS[0])
