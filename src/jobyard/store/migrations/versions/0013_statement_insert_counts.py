"""PostgreSQL: new jobs counted once per statement, not once per row

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

``job_counts`` (0006) learnt of a new job from a row-level trigger: a batch of 1,000 jobs
(one statement since the batch inserts its rows from arrays) ran the trigger's
function 1,000 times, each locking and updating the key's counter row, whose 1,000
versions the next lookups then walked. PostgreSQL now counts inserts with a
statement-level trigger over the statement's transition table: one addition per key
(``jobs_count_add``, the same sharded counters). Deletes and changes of a counted
column keep the row-level trigger. SQLite is unchanged (its triggers are per row).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_COUNTED_UPDATE = "UPDATE OF state, priority, job_type, tenant_id, project_id"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # in the migration's transaction: no job is inserted between the two triggers
    op.execute("DROP TRIGGER tr_jobs_count ON jobs")
    op.execute(
        f"CREATE TRIGGER tr_jobs_count AFTER DELETE OR {_COUNTED_UPDATE} ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_count()"
    )
    op.execute(
        """
        CREATE FUNCTION jobs_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            r record;
        BEGIN
            FOR r IN
                SELECT tenant_id, project_id, state, priority,
                    COALESCE(job_type, '') AS job_type, count(*)::integer AS n
                FROM new_jobs GROUP BY 1, 2, 3, 4, 5
            LOOP
                PERFORM jobs_count_add(r.tenant_id, r.project_id, r.state, r.priority,
                    r.job_type, r.n);
            END LOOP;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER tr_jobs_count_insert AFTER INSERT ON jobs"
        " REFERENCING NEW TABLE AS new_jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_inserted()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER tr_jobs_count_insert ON jobs")
    op.execute("DROP FUNCTION jobs_count_inserted()")
    op.execute("DROP TRIGGER tr_jobs_count ON jobs")
    op.execute(
        f"CREATE TRIGGER tr_jobs_count AFTER INSERT OR DELETE OR {_COUNTED_UPDATE} ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_count()"
    )
