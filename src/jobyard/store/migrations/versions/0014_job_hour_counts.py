"""job counts per hour of creation and submitter, kept by triggers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

``job_hour_counts`` holds, per (tenant, hour of ``created_at`` in UTC, project,
submitter), how many jobs are in each state (one column per state) and the lowest and
highest ``seq`` ever counted there. A time range's counts are then the sum of its whole
hours plus the jobs of at most two edge hours, a submitter's the sum of its hours; a
``created_to`` page walks ``seq`` down from the range's highest one instead of sorting
the range. Triggers keep it in the writing transaction, beside ``job_counts`` (0006):
one row per insert; one row per change of state (the old state's column −1, the new
one's +1), two only when the job moves to another hour, submitter, project or tenant.
On PostgreSQL a writer adds to any row of its key that no other transaction holds,
else to a new row with a random ``shard`` (as 0006), and new jobs are counted once per
statement and key (as 0013). SQLite has one writer at a time and uses shard 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: the job states, one counter column each (a new state needs a migration)
STATES = (
    "scheduled",
    "queued",
    "starting",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
_KEY = "tenant_id, hour, project_id, submitted_by, shard"
_COLUMNS = f"{_KEY}, min_seq, max_seq, {', '.join(STATES)}"
#: the hour of a row's created_at, as the column stores it (SQLite: the text of
#: SQLAlchemy's DATETIME, ``YYYY-MM-DD HH:00:00.000000``; PostgreSQL: a timestamptz)
_SQLITE_HOUR = "substr({r}.created_at, 1, 13) || ':00:00.000000'"
_PG_HOUR = "date_trunc('hour', {r}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
_COUNTED = "state, tenant_id, project_id, submitted_by, created_at"


def _sqlite_row(r: str, sign: str, old: str | None = None) -> str:
    """The VALUES of ``r``'s counter row: ``sign``·1 in its state's column (and, with
    ``old``, −1 in that row's state's column: a change of state in one row)."""
    hour = _SQLITE_HOUR.format(r=r)
    cells = [
        f"{sign}({r}.state = '{s}')" + (f" - ({old}.state = '{s}')" if old else "") for s in STATES
    ]
    return (
        f"{r}.tenant_id, {hour}, {r}.project_id, COALESCE({r}.submitted_by, ''), 0,"
        f" {r}.seq, {r}.seq, {', '.join(cells)}"
    )


_SQLITE_ADD = ", ".join(
    ["min_seq = min(min_seq, excluded.min_seq)", "max_seq = max(max_seq, excluded.max_seq)"]
    + [f"{s} = {s} + excluded.{s}" for s in STATES]
)


def _sqlite_upsert(values: str) -> str:
    return (
        f"INSERT INTO job_hour_counts ({_COLUMNS}) VALUES ({values})"  # noqa: S608
        f" ON CONFLICT ({_KEY}) DO UPDATE SET {_SQLITE_ADD};"
    )


_SAME_KEY = " AND ".join(
    f"OLD.{c} IS NEW.{c}" for c in ("tenant_id", "project_id", "submitted_by")
) + (" AND substr(OLD.created_at, 1, 13) IS substr(NEW.created_at, 1, 13)")

_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER tr_jobs_hour_count_insert AFTER INSERT ON jobs
    BEGIN
        {_sqlite_upsert(_sqlite_row("NEW", "+"))}
    END
    """,
    f"""
    CREATE TRIGGER tr_jobs_hour_count_delete AFTER DELETE ON jobs
    BEGIN
        {_sqlite_upsert(_sqlite_row("OLD", "-"))}
    END
    """,
    f"""
    CREATE TRIGGER tr_jobs_hour_count_state AFTER UPDATE OF {_COUNTED} ON jobs
    WHEN OLD.state IS NOT NEW.state AND {_SAME_KEY}
    BEGIN
        {_sqlite_upsert(_sqlite_row("NEW", "+", old="OLD"))}
    END
    """,
    f"""
    CREATE TRIGGER tr_jobs_hour_count_move AFTER UPDATE OF {_COUNTED} ON jobs
    WHEN NOT ({_SAME_KEY})
    BEGIN
        {_sqlite_upsert(_sqlite_row("OLD", "-"))}
        {_sqlite_upsert(_sqlite_row("NEW", "+"))}
    END
    """,
]


def _pg_cells(prefix: str) -> str:
    """Each state's change: ``d`` for ``st_to``, −``d`` for ``st_from``."""
    return ", ".join(
        f"{prefix}(CASE WHEN st_to = '{s}' THEN d ELSE 0 END"
        f" - CASE WHEN st_from = '{s}' THEN d ELSE 0 END)"
        for s in STATES
    )


_PG_WHERE = "tenant_id = t AND hour = h AND project_id = p AND submitted_by = sb"
_PG_ADD = ", ".join(
    [
        "min_seq = LEAST(job_hour_counts.min_seq, lo)",
        "max_seq = GREATEST(job_hour_counts.max_seq, hi)",
    ]
    + [
        f"{s} = job_hour_counts.{s} + CASE WHEN st_to = '{s}' THEN d ELSE 0 END"
        f" - CASE WHEN st_from = '{s}' THEN d ELSE 0 END"
        for s in STATES
    ]
)

_PG_FUNCTIONS = [
    f"""
    CREATE FUNCTION jobs_hour_count_add(
        t text, h timestamptz, p text, sb text, lo integer, hi integer,
        st_from text, st_to text, d integer
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        got integer;
    BEGIN
        SELECT shard INTO got FROM job_hour_counts WHERE {_PG_WHERE}
        LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE job_hour_counts SET {_PG_ADD} WHERE {_PG_WHERE} AND shard = got;
        ELSE
            INSERT INTO job_hour_counts ({_COLUMNS})
            VALUES (t, h, p, sb, floor(random() * 2147483647)::integer, lo, hi,
                {_pg_cells("")})
            ON CONFLICT ({_KEY}) DO UPDATE SET {_PG_ADD};
        END IF;
    END
    $$
    """,  # noqa: S608  (constants only)
    f"""
    CREATE FUNCTION jobs_hour_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.tenant_id = NEW.tenant_id
                AND OLD.project_id = NEW.project_id
                AND OLD.submitted_by IS NOT DISTINCT FROM NEW.submitted_by
                AND OLD.created_at = NEW.created_at THEN
            IF OLD.state <> NEW.state THEN
                PERFORM jobs_hour_count_add(NEW.tenant_id, {_PG_HOUR.format(r="NEW")},
                    NEW.project_id, COALESCE(NEW.submitted_by, ''), NEW.seq, NEW.seq,
                    OLD.state, NEW.state, 1);
            END IF;
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            PERFORM jobs_hour_count_add(OLD.tenant_id, {_PG_HOUR.format(r="OLD")},
                OLD.project_id, COALESCE(OLD.submitted_by, ''), OLD.seq, OLD.seq,
                OLD.state, NULL, 1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM jobs_hour_count_add(NEW.tenant_id, {_PG_HOUR.format(r="NEW")},
                NEW.project_id, COALESCE(NEW.submitted_by, ''), NEW.seq, NEW.seq,
                NULL, NEW.state, 1);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE FUNCTION jobs_hour_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        r record;
    BEGIN
        FOR r IN
            SELECT tenant_id, {_PG_HOUR.format(r="new_jobs")} AS hour, project_id,
                COALESCE(submitted_by, '') AS submitted_by, state,
                min(seq) AS lo, max(seq) AS hi, count(*)::integer AS n
            FROM new_jobs GROUP BY 1, 2, 3, 4, 5
        LOOP
            PERFORM jobs_hour_count_add(r.tenant_id, r.hour, r.project_id, r.submitted_by,
                r.lo, r.hi, NULL, r.state, r.n);
        END LOOP;
        RETURN NULL;
    END
    $$
    """,  # noqa: S608  (constants only)
    f"""
    CREATE TRIGGER tr_jobs_hour_count AFTER DELETE OR UPDATE OF {_COUNTED} ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_hour_count()
    """,
    """
    CREATE TRIGGER tr_jobs_hour_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_hour_count_inserted()
    """,
]


def _fill(hour: str) -> str:
    cells = ", ".join(f"SUM(CASE WHEN state = '{s}' THEN 1 ELSE 0 END)" for s in STATES)
    return (
        f"INSERT INTO job_hour_counts ({_COLUMNS})"  # noqa: S608
        f" SELECT tenant_id, {hour}, project_id, COALESCE(submitted_by, ''), 0,"
        f" MIN(seq), MAX(seq), {cells} FROM jobs"
        f" GROUP BY tenant_id, {hour}, project_id, COALESCE(submitted_by, '')"
    )


def upgrade() -> None:
    op.create_table(
        "job_hour_counts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("submitted_by", sa.String(length=200), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("min_seq", sa.Integer(), nullable=False),
        sa.Column("max_seq", sa.Integer(), nullable=False),
        *(sa.Column(s, sa.BigInteger(), nullable=False) for s in STATES),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "hour",
            "project_id",
            "submitted_by",
            "shard",
            name=op.f("pk_job_hour_counts"),
        ),
    )
    op.create_index(
        "ix_job_hour_counts_tenant_id_submitted_by_hour",
        "job_hour_counts",
        ["tenant_id", "submitted_by", "hour"],
    )
    if op.get_bind().dialect.name == "postgresql":
        # no job may change between the count below and the triggers' first firing
        op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        op.execute(_fill(_PG_HOUR.format(r="jobs")))
        for ddl in _PG_FUNCTIONS:
            op.execute(ddl)
    else:
        op.execute(_fill(_SQLITE_HOUR.format(r="jobs")))
        for ddl in _SQLITE_TRIGGERS:
            op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tr_jobs_hour_count_insert ON jobs")
        op.execute("DROP TRIGGER tr_jobs_hour_count ON jobs")
        op.execute("DROP FUNCTION jobs_hour_count_inserted()")
        op.execute("DROP FUNCTION jobs_hour_count()")
        op.execute(
            "DROP FUNCTION jobs_hour_count_add("
            "text, timestamptz, text, text, integer, integer, text, text, integer)"
        )
    else:
        for name in ("insert", "delete", "state", "move"):
            op.execute(f"DROP TRIGGER tr_jobs_hour_count_{name}")
    op.drop_index("ix_job_hour_counts_tenant_id_submitted_by_hour", table_name="job_hour_counts")
    op.drop_table("job_hour_counts")
