"""job counts kept by triggers; list indexes by state, job type and submitter

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``job_counts`` holds how many jobs each (tenant, project, state, priority, job type)
has, so the list's ``summary.by_status`` no longer counts a tenant's rows (≈ 100 ms per
million on SQLite). Triggers on ``jobs`` keep it in the writing transaction: +1 for the
new row, −1 for the old one, on insert, delete and a change of any of those columns.
On PostgreSQL a writer adds to any row of its key that no other transaction holds
(``FOR UPDATE SKIP LOCKED``), else to a new row with a random ``shard``: writers never
wait for one another on a counter (no queue, no deadlock), there are at most as many
rows per key as writers once held at the same time, and readers sum them. SQLite has
one writer at a time and uses shard 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER tr_jobs_count_insert AFTER INSERT ON jobs
    BEGIN
        INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)
        VALUES (NEW.tenant_id, NEW.project_id, NEW.state, NEW.priority,
                COALESCE(NEW.job_type, ''), 0, 1)
        ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)
        DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER tr_jobs_count_delete AFTER DELETE ON jobs
    BEGIN
        INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)
        VALUES (OLD.tenant_id, OLD.project_id, OLD.state, OLD.priority,
                COALESCE(OLD.job_type, ''), 0, -1)
        ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)
        DO UPDATE SET n = n - 1;
    END
    """,
    """
    CREATE TRIGGER tr_jobs_count_update
    AFTER UPDATE OF state, priority, job_type, tenant_id, project_id ON jobs
    WHEN OLD.state IS NOT NEW.state OR OLD.priority IS NOT NEW.priority
        OR OLD.job_type IS NOT NEW.job_type OR OLD.tenant_id IS NOT NEW.tenant_id
        OR OLD.project_id IS NOT NEW.project_id
    BEGIN
        INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)
        VALUES (OLD.tenant_id, OLD.project_id, OLD.state, OLD.priority,
                COALESCE(OLD.job_type, ''), 0, -1)
        ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)
        DO UPDATE SET n = n - 1;
        INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)
        VALUES (NEW.tenant_id, NEW.project_id, NEW.state, NEW.priority,
                COALESCE(NEW.job_type, ''), 0, 1)
        ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)
        DO UPDATE SET n = n + 1;
    END
    """,
]

_PG_TRIGGERS = [
    """
    CREATE FUNCTION jobs_count_add(
        t text, p text, st text, pr text, jt text, d integer
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        got integer;
    BEGIN
        SELECT shard INTO got FROM job_counts
        WHERE tenant_id = t AND project_id = p AND state = st AND priority = pr
            AND job_type = jt
        LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE job_counts SET n = n + d
            WHERE tenant_id = t AND project_id = p AND state = st AND priority = pr
                AND job_type = jt AND shard = got;
        ELSE
            INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n)
            VALUES (t, p, st, pr, jt, floor(random() * 2147483647)::integer, d)
            ON CONFLICT (tenant_id, project_id, state, priority, job_type, shard)
            DO UPDATE SET n = job_counts.n + d;
        END IF;
    END
    $$
    """,
    """
    CREATE FUNCTION jobs_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.priority = NEW.priority
                AND OLD.job_type IS NOT DISTINCT FROM NEW.job_type
                AND OLD.tenant_id = NEW.tenant_id AND OLD.project_id = NEW.project_id THEN
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            PERFORM jobs_count_add(OLD.tenant_id, OLD.project_id, OLD.state, OLD.priority,
                COALESCE(OLD.job_type, ''), -1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM jobs_count_add(NEW.tenant_id, NEW.project_id, NEW.state, NEW.priority,
                COALESCE(NEW.job_type, ''), 1);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER tr_jobs_count
    AFTER INSERT OR DELETE OR UPDATE OF state, priority, job_type, tenant_id, project_id ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_count()
    """,
]


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("job_type", sa.String(length=100), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "project_id",
            "state",
            "priority",
            "job_type",
            "shard",
            name=op.f("pk_job_counts"),
        ),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_state")
        batch_op.create_index(
            "ix_jobs_tenant_id_state_seq", ["tenant_id", "state", "seq"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_tenant_id_job_type_seq", ["tenant_id", "job_type", "seq"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_tenant_id_submitted_by_seq", ["tenant_id", "submitted_by", "seq"], unique=False
        )
    # after the index changes: a batch that copied the table would lose its triggers
    if op.get_bind().dialect.name == "postgresql":
        # no job may change between the count below and the trigger's first firing
        op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        triggers = _PG_TRIGGERS
    else:
        triggers = _SQLITE_TRIGGERS
    op.execute(
        "INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type, shard, n) "
        "SELECT tenant_id, project_id, state, priority, COALESCE(job_type, ''), 0, COUNT(*) "
        "FROM jobs GROUP BY tenant_id, project_id, state, priority, COALESCE(job_type, '')"
    )
    for ddl in triggers:
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tr_jobs_count ON jobs")
        op.execute("DROP FUNCTION jobs_count()")
        op.execute("DROP FUNCTION jobs_count_add(text, text, text, text, text, integer)")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER tr_jobs_count_{name}")
    op.drop_table("job_counts")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_submitted_by_seq")
        batch_op.drop_index("ix_jobs_tenant_id_job_type_seq")
        batch_op.drop_index("ix_jobs_tenant_id_state_seq")
        batch_op.create_index("ix_jobs_tenant_id_state", ["tenant_id", "state"], unique=False)
