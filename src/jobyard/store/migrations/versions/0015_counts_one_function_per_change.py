"""PostgreSQL: both counts kept by one trigger function per kind of change, each backend
adding to counter rows of its own

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

``job_counts`` (0006, 0013) and ``job_hour_counts`` (0014) were each kept by two
triggers: a statement-level one for inserts and a row-level one for changes and deletes,
each calling an adding function that first locked a row of the key no other transaction
held (``SELECT … FOR UPDATE SKIP LOCKED``: a tuple lock, itself a heap change and a WAL
record) and then updated it, else inserted a row with a random ``shard``. A single
submit thus ran two statement triggers, two grouping queries, two function calls and two
lock-then-update pairs in PostgreSQL's backend (≈ 130–220 µs of its CPU per submit, of
≈ 250 µs for everything else).

Now one statement-level function counts the inserted jobs into both tables and one
row-level function counts a change or a delete into both, the adds written inline. Each
backend adds to the rows whose ``shard`` is its own process id (``pg_backend_pid()``): no
other transaction can hold them (a backend runs one transaction at a time), so a plain
``UPDATE`` does, without a lock first and without ``SKIP LOCKED``; a key's first add on a
backend inserts its row. Counts stay the sum over shards, exact whatever the rows. The
rows of backends that are gone are folded into shard 0 by ``job_counts_fold()`` (the
server's upkeep calls it): without it a key would keep one row per connection it ever
had. Hour rows more than an hour old are folded even while their backend lives, so that
a time-range count reads about one row per past hour. The fold takes only rows nobody
holds (``SKIP LOCKED``) and runs one at a time (an advisory lock), so it never waits for
a writer nor two folds for each other.

SQLite is unchanged (one writer, shard 0). The downgrade puts 0013's and 0014's
triggers back (their functions stay in place at this revision, unused).
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: the job states, one counter column each in ``job_hour_counts`` (as 0014)
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
_C_KEY = ("tenant_id", "project_id", "state", "priority", "job_type")
_H_KEY = ("tenant_id", "hour", "project_id", "submitted_by")
_C_CONFLICT = f"({', '.join(_C_KEY)}, shard)"
_H_CONFLICT = f"({', '.join(_H_KEY)}, shard)"
_H_COLUMNS = f"{', '.join(_H_KEY)}, shard, min_seq, max_seq, {', '.join(STATES)}"
#: the hour of a row's created_at, as ``job_hour_counts.hour`` holds it (0014)
_HOUR = "date_trunc('hour', {r}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
#: the advisory lock that lets one ``job_counts_fold()`` run at a time ('jcnt')
_FOLD_LOCK = 0x6A636E74
#: hour rows folded even while their backend lives: a time-range count sums a key's rows
#: per hour, so past hours keep one row each instead of one per pooled connection that
#: wrote them (a write to a past hour, a late state change, is rare: it may find its row
#: folded and insert it again, or wait for the fold's short transaction)
_SETTLED = (
    "hour < date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 hour'"
)
#: the changes of a job that move it between counter rows
_COUNTED = "state, priority, job_type, tenant_id, project_id, submitted_by, created_at"


def _count_add(t: str, p: str, st: str, pr: str, jt: str, d: str) -> str:
    """plpgsql: add ``d`` to the key's ``job_counts`` row of this backend (``me``)."""
    where = f"tenant_id = {t} AND project_id = {p} AND state = {st} AND priority = {pr}"
    return f"""
        UPDATE job_counts SET n = n + {d}
        WHERE {where} AND job_type = {jt} AND shard = me;
        IF NOT FOUND THEN
            INSERT INTO job_counts ({", ".join(_C_KEY)}, shard, n)
            VALUES ({t}, {p}, {st}, {pr}, {jt}, me, {d})
            ON CONFLICT {_C_CONFLICT} DO UPDATE SET n = job_counts.n + excluded.n;
        END IF;"""  # noqa: S608  (constants and plpgsql names only)


def _delta(s: str, to: str | None, off: str | None, d: str) -> str:
    """The change of state ``s``'s column: ``d`` when ``to`` is it, −``d`` when ``off``
    is (either may be left out)."""
    parts = []
    if to is not None:
        parts.append(f"CASE WHEN {to} = '{s}' THEN {d} ELSE 0 END")
    if off is not None:
        parts.append(f"CASE WHEN {off} = '{s}' THEN {d} ELSE 0 END")
    if len(parts) == 2:
        return f"{parts[0]} - {parts[1]}"
    return parts[0] if to is not None else f"-({parts[0]})"


def _hour_add(
    t: str, h: str, p: str, sb: str, lo: str, hi: str, to: str | None, off: str | None, d: str
) -> str:
    """plpgsql: count ``d`` jobs into state ``to`` and out of state ``off`` in the key's
    ``job_hour_counts`` row of this backend, its seq bounds widened to ``lo``–``hi``."""
    sets = ", ".join(
        [f"min_seq = LEAST(min_seq, {lo})", f"max_seq = GREATEST(max_seq, {hi})"]
        + [f"{s} = {s} + {_delta(s, to, off, d)}" for s in STATES]
    )
    conflict = ", ".join(
        [
            "min_seq = LEAST(job_hour_counts.min_seq, excluded.min_seq)",
            "max_seq = GREATEST(job_hour_counts.max_seq, excluded.max_seq)",
        ]
        + [f"{s} = job_hour_counts.{s} + excluded.{s}" for s in STATES]
    )
    cells = ", ".join(_delta(s, to, off, d) for s in STATES)
    return f"""
        UPDATE job_hour_counts SET {sets}
        WHERE tenant_id = {t} AND hour = {h} AND project_id = {p} AND submitted_by = {sb}
            AND shard = me;
        IF NOT FOUND THEN
            INSERT INTO job_hour_counts ({_H_COLUMNS})
            VALUES ({t}, {h}, {p}, {sb}, me, {lo}, {hi}, {cells})
            ON CONFLICT {_H_CONFLICT} DO UPDATE SET {conflict};
        END IF;"""  # noqa: S608  (constants and plpgsql names only)


def _row_count_add(r: str, d: str) -> str:
    return _count_add(
        f"{r}.tenant_id", f"{r}.project_id", f"{r}.state", f"{r}.priority",
        f"COALESCE({r}.job_type, '')", d,
    )  # fmt: skip


def _row_hour_add(r: str, to: str | None, off: str | None) -> str:
    return _hour_add(
        f"{r}.tenant_id", f"({_HOUR.format(r=r)})", f"{r}.project_id",
        f"COALESCE({r}.submitted_by, '')", f"{r}.seq", f"{r}.seq", to, off, "1",
    )  # fmt: skip


_INSERTED = f"""
CREATE FUNCTION jobs_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    me integer := pg_backend_pid();
BEGIN
    FOR r IN
        SELECT tenant_id, project_id, state, priority, COALESCE(job_type, '') AS job_type,
            count(*)::integer AS n
        FROM new_jobs GROUP BY 1, 2, 3, 4, 5
    LOOP{_count_add("r.tenant_id", "r.project_id", "r.state", "r.priority", "r.job_type", "r.n")}
    END LOOP;
    FOR r IN
        SELECT tenant_id, {_HOUR.format(r="new_jobs")} AS hour, project_id,
            COALESCE(submitted_by, '') AS submitted_by, state,
            min(seq) AS lo, max(seq) AS hi, count(*)::integer AS n
        FROM new_jobs GROUP BY 1, 2, 3, 4, 5
    LOOP{
    _hour_add(
        "r.tenant_id",
        "r.hour",
        "r.project_id",
        "r.submitted_by",
        "r.lo",
        "r.hi",
        "r.state",
        None,
        "r.n",
    )
}
    END LOOP;
    RETURN NULL;
END
$$
"""  # noqa: S608  (constants only)

_CHANGED = f"""
CREATE FUNCTION jobs_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me integer := pg_backend_pid();
BEGIN
    IF TG_OP = 'DELETE' THEN{_row_count_add("OLD", "-1")}{_row_hour_add("OLD", None, "OLD.state")}
        RETURN NULL;
    END IF;
    IF OLD.state <> NEW.state OR OLD.priority <> NEW.priority
            OR OLD.job_type IS DISTINCT FROM NEW.job_type
            OR OLD.tenant_id <> NEW.tenant_id OR OLD.project_id <> NEW.project_id THEN
        {_row_count_add("OLD", "-1")}{_row_count_add("NEW", "1")}
    END IF;
    IF OLD.tenant_id = NEW.tenant_id AND OLD.project_id = NEW.project_id
            AND OLD.submitted_by IS NOT DISTINCT FROM NEW.submitted_by
            AND OLD.created_at = NEW.created_at THEN
        IF OLD.state <> NEW.state THEN{_row_hour_add("NEW", "NEW.state", "OLD.state")}
        END IF;
    ELSE{_row_hour_add("OLD", None, "OLD.state")}{_row_hour_add("NEW", "NEW.state", None)}
    END IF;
    RETURN NULL;
END
$$
"""


def _fold(
    table: str, key: tuple[str, ...], values: str, sums: str, conflict: str, settled: str = ""
) -> str:
    """plpgsql: the rows of ``table`` of backends gone (and not held) added into shard 0;
    ``settled``: a condition under which a live backend's row is folded too."""
    keys = ", ".join(key)
    also = f" OR {settled}" if settled else ""
    return f"""
    WITH gone AS (
        DELETE FROM {table} WHERE ctid IN (
            SELECT ctid FROM {table}
            WHERE shard <> 0 AND (shard NOT IN (SELECT pid FROM pg_stat_activity){also})
            FOR UPDATE SKIP LOCKED)
        RETURNING *)
    INSERT INTO {table} ({keys}, shard, {values})
    SELECT {keys}, 0, {sums} FROM gone GROUP BY {keys} ORDER BY {keys}
    ON CONFLICT ({keys}, shard) DO UPDATE SET {conflict};
    GET DIAGNOSTICS got = ROW_COUNT;
    folded := folded + got;"""  # noqa: S608  (constants only)


_FOLD = f"""
CREATE FUNCTION job_counts_fold() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    folded integer := 0;
    got integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock({_FOLD_LOCK}) THEN
        RETURN 0;
    END IF;{_fold("job_counts", _C_KEY, "n", "sum(n)", "n = job_counts.n + excluded.n")}{
    _fold(
        "job_hour_counts",
        _H_KEY,
        f"min_seq, max_seq, {', '.join(STATES)}",
        "min(min_seq), max(max_seq), " + ", ".join(f"sum({s})" for s in STATES),
        ", ".join(
            [
                "min_seq = LEAST(job_hour_counts.min_seq, excluded.min_seq)",
                "max_seq = GREATEST(job_hour_counts.max_seq, excluded.max_seq)",
            ]
            + [f"{s} = job_hour_counts.{s} + excluded.{s}" for s in STATES]
        ),
        _SETTLED,
    )
}
    RETURN folded;
END
$$
"""

_OLD_TRIGGERS = (
    "tr_jobs_count",
    "tr_jobs_count_insert",
    "tr_jobs_hour_count",
    "tr_jobs_hour_count_insert",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # in the migration's transaction: DROP TRIGGER locks jobs, so no job is written
    # between the old triggers and the new ones
    for name in _OLD_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON jobs")
    op.execute(_INSERTED)
    op.execute(_CHANGED)
    op.execute(_FOLD)
    op.execute(
        "CREATE TRIGGER tr_jobs_counts_insert AFTER INSERT ON jobs"
        " REFERENCING NEW TABLE AS new_jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobs_counts_inserted()"
    )
    op.execute(
        f"CREATE TRIGGER tr_jobs_counts AFTER DELETE OR UPDATE OF {_COUNTED} ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_counts_changed()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER tr_jobs_counts ON jobs")
    op.execute("DROP TRIGGER tr_jobs_counts_insert ON jobs")
    op.execute("DROP FUNCTION job_counts_fold()")
    op.execute("DROP FUNCTION jobs_counts_changed()")
    op.execute("DROP FUNCTION jobs_counts_inserted()")
    # 0013's and 0014's triggers, on their functions (still in place); the rows written
    # meanwhile (shard = a backend's pid) are counter rows like any other
    op.execute(
        "CREATE TRIGGER tr_jobs_count AFTER DELETE OR UPDATE OF state, priority, job_type,"
        " tenant_id, project_id ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_count()"
    )
    op.execute(
        "CREATE TRIGGER tr_jobs_count_insert AFTER INSERT ON jobs"
        " REFERENCING NEW TABLE AS new_jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_inserted()"
    )
    op.execute(
        "CREATE TRIGGER tr_jobs_hour_count AFTER DELETE OR UPDATE OF state, tenant_id,"
        " project_id, submitted_by, created_at ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_hour_count()"
    )
    op.execute(
        "CREATE TRIGGER tr_jobs_hour_count_insert AFTER INSERT ON jobs"
        " REFERENCING NEW TABLE AS new_jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobs_hour_count_inserted()"
    )
