"""What the count triggers cost PostgreSQL's backend per single-row statement.

On a fresh database at head (as ``w3_submit.py`` makes it), one autocommit connection
inserts a plain job and later moves it to ``starting`` (one statement each, prepared,
committed), in blocks that cycle through three trigger setups: 0013's and 0014's
triggers (``old``: their functions stay in place at head for 0015's downgrade), 0015's
(``new``: one function per kind of change, rows per backend) and none (the counts go
wrong: a scratch database only). The figure is the backend's CPU per statement
(``/proc/<pid>/schedstat``, ns: a PostgreSQL on this machine only), min / p25 / median
over the blocks of each setup; the blocks alternate so that the load moves all three
alike.

    .venv/bin/python bench/count_triggers.py [--blocks 60] [--rows 200] --database-url postgresql+psycopg://root@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import uuid

import psycopg
from common import low_quartiles, machine_line
from sqlalchemy.engine import make_url
from w3_submit import fresh_database

from jobyard.store import migrate
from jobyard.store.database import Database

_DROP = [
    f"DROP TRIGGER IF EXISTS {name} ON jobs"
    for name in (
        "tr_jobs_count",
        "tr_jobs_count_insert",
        "tr_jobs_hour_count",
        "tr_jobs_hour_count_insert",
        "tr_jobs_counts",
        "tr_jobs_counts_insert",
    )
]
_INSERTED = " AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT"
SETUPS = {
    "old (0013, 0014)": [
        *_DROP,
        "CREATE TRIGGER tr_jobs_count AFTER DELETE OR UPDATE OF state, priority, job_type,"
        " tenant_id, project_id ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_count()",
        f"CREATE TRIGGER tr_jobs_count_insert{_INSERTED} EXECUTE FUNCTION jobs_count_inserted()",
        "CREATE TRIGGER tr_jobs_hour_count AFTER DELETE OR UPDATE OF state, tenant_id,"
        " project_id, submitted_by, created_at ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_hour_count()",
        f"CREATE TRIGGER tr_jobs_hour_count_insert{_INSERTED}"
        " EXECUTE FUNCTION jobs_hour_count_inserted()",
    ],
    "new (0015)": [
        *_DROP,
        f"CREATE TRIGGER tr_jobs_counts_insert{_INSERTED} EXECUTE FUNCTION jobs_counts_inserted()",
        "CREATE TRIGGER tr_jobs_counts AFTER DELETE OR UPDATE OF state, priority, job_type,"
        " tenant_id, project_id, submitted_by, created_at ON jobs"
        " FOR EACH ROW EXECUTE FUNCTION jobs_counts_changed()",
    ],
    "no count triggers": _DROP,
}
INSERT = (
    "INSERT INTO jobs (id, tenant_id, priority, parameters, metadata, env, state, sort_key,"
    " created_at, updated_at) VALUES (%s, 't', 'normal', '{}', '{}', '{}', 'queued', 0,"
    " now(), now())"
)
UPDATE = "UPDATE jobs SET state = 'starting', updated_at = now() WHERE id = %s"
WARMUP = 10


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=60)
    ap.add_argument("--rows", type=int, default=200, help="statements of each kind per block")
    ap.add_argument("--database-url", required=True, help="PostgreSQL URL (database ignored)")
    ap.add_argument("--bench-db", default="jobyard_bench_triggers")
    args = ap.parse_args()
    print(machine_line())
    with fresh_database(args.database_url, args.bench_db) as url:
        db = Database(url)
        migrate.upgrade(db)
        db.dispose()
        parsed = make_url(url)
        dsn = {
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": parsed.username,
            "password": parsed.password,
            "dbname": parsed.database,
        }
        with (
            psycopg.connect(**dsn, autocommit=True) as admin,  # type: ignore[arg-type]
            psycopg.connect(**dsn, autocommit=True) as conn,  # type: ignore[arg-type]
        ):
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            pid = int(row[0])
            conn.execute("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', now())")
            labels = list(SETUPS)
            figures: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in labels}
            for b in range(args.blocks):
                # each setup in every position: forwards, then backwards
                order = labels if (b // len(labels)) % 2 == 0 else labels[::-1]
                label = order[b % len(labels)]
                for ddl in SETUPS[label]:
                    admin.execute(ddl)
                ids = [uuid.uuid4().hex for _ in range(WARMUP + args.rows)]
                for job_id in ids[:WARMUP]:
                    conn.execute(INSERT, (job_id,), prepare=True)
                    conn.execute(UPDATE, (job_id,), prepare=True)
                for statement, out in zip((INSERT, UPDATE), figures[label], strict=True):
                    start = _cpu_ns(pid)
                    for job_id in ids[WARMUP:]:
                        conn.execute(statement, (job_id,), prepare=True)
                    out.append((_cpu_ns(pid) - start) / args.rows / 1e3)
    print(f"backend CPU us per statement, {args.blocks} blocks of {args.rows}:")
    for label in labels:
        inserts, updates = figures[label]
        print(
            f"  {label:18}: INSERT {low_quartiles(inserts)}; state UPDATE {low_quartiles(updates)}"
        )


if __name__ == "__main__":
    main()
