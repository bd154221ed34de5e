"""Job store at scale: the claim with 1,000 vs 1,000,000 queued jobs, and filtered
``GET /v1/jobs`` pages over 1,000,000 jobs, on SQLite or PostgreSQL.

1. A fresh database (SQLite file in a temporary directory, or the PostgreSQL database
   ``jobyard_scale``, created and dropped) is migrated and filled by bulk inserts of the
   columns ``JobStore.insert`` writes (10k rows per executemany), with the
   ``job_counts`` triggers off during bulk writes and the counts recomputed after.
2. Claim: ``claim_next`` called in-process ``--claims`` times with 1,000 queued jobs,
   then again after the fill reaches ``--jobs`` queued jobs.
3. List: the jobs get a realistic mix of states (mostly ended, 2 % queued), then a real
   ``jobyard serve`` (API only) on that database answers each filtered page
   ``--pages`` times (first page, and the page after a cursor from deep in the list).
4. The query plans of the claim, the list and the counts are printed.

    .venv/bin/python bench/scale.py [--jobs 1000000] [--claims 200] [--pages 200]
    .venv/bin/python bench/scale.py --list-only [--pages 60]   # no claims: fill, then the list
    .venv/bin/python bench/scale.py --database-url postgresql+psycopg://root@127.0.0.1:5432/postgres
    .venv/bin/python bench/scale.py --trigger-cost [--database-url …]   # triggers' write cost
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import load_average, machine_line, percentile, running_server

from jobyard.domain.jobs import Job
from jobyard.domain.priorities import Priority
from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.tables import jobs, projects, tenants

CHUNK = 10_000
TENANT = "default"  # the tenant the server's bootstrap key belongs to
OTHER_TENANT = "other"  # 10 % of the rows: the list must not read them
PG_DB = "jobyard_scale"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
AGING_STEP_S = 300.0
RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}
PRIORITIES = [Priority.NORMAL] * 14 + [Priority.HIGH] * 3 + [Priority.LOW] * 2 + [Priority.CRITICAL]
JOB_TYPES = 50  # type-00 … type-49; type-00 is rare (0.1 %), the others share the rest
USERS = 20


def job_rows(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` queued jobs numbered from ``start``, with the columns JobStore.insert
    writes; one job per second of creation time."""
    rows = []
    for i in range(start, start + count):
        created = BASE + timedelta(seconds=i)
        priority = PRIORITIES[rng.randrange(len(PRIORITIES))]
        job_type = "type-00" if rng.random() < 0.001 else f"type-{rng.randrange(1, JOB_TYPES):02d}"
        rows.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "tenant_id": OTHER_TENANT if i % 10 == 9 else TENANT,
                "name": f"job {i}",
                "description": None,
                "job_type": job_type,
                "priority": priority.value,
                "entrypoint": "true",
                "argv": None,
                "parameters": {"i": i},
                "metadata": {},
                "env": {},
                "timeout_s": None,
                "scheduled_at": None,
                "submitted_by": f"user{rng.randrange(USERS)}",
                "submitted_key_id": None,
                "project_id": "default",
                "idempotency_key": None,
                "request_hash": None,
                "model_version_id": None,
                "model_sha256": None,
                "environment_id": None,
                "input_folder_id": None,
                "output_folder_id": None,
                "input_bindings": None,
                "definition_id": None,
                "continue_on_error": False,
                "slots": 1,
                "max_attempts": 1,
                "retry_on": ["node_lost"],
                "retry_backoff_s": 10.0,
                "retry_of": None,
                "retry_reason": None,
                "notifications": None,
                "inputs_sha256": None,
                "input_bytes": None,
                "items_total": None,
                "packages": None,
                "runtime_env": None,
                "state": "queued",
                "sort_key": created.timestamp() - RANK[priority] * AGING_STEP_S,
                "created_at": created,
                "updated_at": created,
                "queued_at": created,
            }
        )
    return rows


@contextmanager
def without_count_triggers(db: Database) -> Iterator[None]:
    """Bulk writes without the ``job_counts`` triggers, then the counts recomputed (as
    migration 0006 does). The triggers cost per row and, on PostgreSQL, a transaction
    that changes one counter row many times walks all its versions each time."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE jobs DISABLE TRIGGER USER")
            restore = ["ALTER TABLE jobs ENABLE TRIGGER USER"]
        else:
            found = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            ).all()
            for name, _ in found:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            restore = [sql for _, sql in found]
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM job_counts")
            conn.exec_driver_sql(
                "INSERT INTO job_counts (tenant_id, project_id, state, priority, job_type,"
                " shard, n) SELECT tenant_id, project_id, state, priority,"
                " COALESCE(job_type, ''), 0, COUNT(*) FROM jobs"
                " GROUP BY tenant_id, project_id, state, priority, COALESCE(job_type, '')"
            )
            refill_hour_counts(conn, db.dialect)
            for ddl in restore:
                conn.exec_driver_sql(ddl)


def refill_hour_counts(conn: sa.Connection, dialect: str) -> None:
    """``job_hour_counts`` (migration 0014) recomputed as that migration fills it, if the
    revision measured has it."""
    if not sa.inspect(conn).has_table("job_hour_counts"):
        return
    states = [
        "scheduled", "queued", "starting", "running", "cancelling",
        "succeeded", "failed", "timed_out", "cancelled",
    ]  # fmt: skip
    if dialect == "postgresql":
        hour = "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        hour = "substr(created_at, 1, 13) || ':00:00.000000'"
    cells = ", ".join(f"SUM(CASE WHEN state = '{s}' THEN 1 ELSE 0 END)" for s in states)
    conn.exec_driver_sql("DELETE FROM job_hour_counts")
    conn.exec_driver_sql(
        "INSERT INTO job_hour_counts (tenant_id, hour, project_id, submitted_by, shard,"
        f" min_seq, max_seq, {', '.join(states)}) SELECT tenant_id, {hour}, project_id,"
        f" COALESCE(submitted_by, ''), 0, MIN(seq), MAX(seq), {cells} FROM jobs"
        f" GROUP BY tenant_id, {hour}, project_id, COALESCE(submitted_by, '')"
    )


def fill(db: Database, start: int, end: int, rng: random.Random) -> float:
    """Insert jobs ``start`` … ``end - 1`` (queued); returns the seconds it took."""
    t0 = time.perf_counter()
    for lo in range(start, end, CHUNK):
        rows = job_rows(lo, min(CHUNK, end - lo), rng)
        with db.engine.begin() as conn:
            conn.execute(jobs.insert(), rows)
        if (lo - start) % 200_000 == 0 and lo > start:
            print(f"  … {lo:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def analyze(db: Database) -> None:
    """Statistics for the planner; on PostgreSQL also the visibility map (``VACUUM``, as
    autovacuum does within minutes of a bulk change), which index-only scans rely on."""
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) jobs")
            conn.exec_driver_sql("ANALYZE")
        return
    with db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def add_tenants(db: Database) -> None:
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        for t in (TENANT, OTHER_TENANT):
            conn.execute(tenants.insert().values(id=t, name=t, created_at=now))
            conn.execute(
                projects.insert().values(tenant_id=t, id="default", name="Default", created_at=now)
            )


def claimer(db: Database) -> Callable[[], Job | None]:
    """``claim_next`` of whichever store holds it (it is moving to store/claims.py)."""
    try:
        from jobyard.store import claims  # type: ignore[attr-defined,unused-ignore]

        store: Any = next(
            getattr(claims, n)(db) for n in dir(claims) if n.endswith("Store") and n != "JobStore"
        )
        where = "store/claims.py"
    except (ImportError, StopIteration):
        from jobyard.store.jobs import JobStore

        store, where = JobStore(db), "JobStore"
    print(f"  claim through {where}.claim_next")

    def claim() -> Job | None:
        return store.claim_next(  # type: ignore[no-any-return]
            node_id="bench-node", now=datetime.now(UTC), lease_ttl_s=60.0
        )

    return claim


def time_claims(claim: Callable[[], Job | None], n: int) -> list[float]:
    """Milliseconds per claim, ``n`` claims (each must find a job)."""
    claim()  # warm: statement cache, pages
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        job = claim()
        out.append((time.perf_counter() - t0) * 1000)
        assert job is not None, "the queue ran dry"
    return out


def claim_blocks(claim: Callable[[], Job | None], n: int, blocks: int, size: str) -> float:
    """``blocks`` blocks of ``n`` claims (the load of this shared machine drifts): each
    block's figures, and the median of the blocks' p50s, which is returned."""
    p50s = []
    for b in range(1, blocks + 1):
        times = time_claims(claim, n)
        p50s.append(percentile(times, 50))
        print(f"claim, {size} jobs queued, block {b}: {fmt_ms(times)}", flush=True)
    return statistics.median(p50s)


def fmt_ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.2f} ms, p95 {percentile(values, 95):.2f} ms, "
        f"max {max(values):.2f} ms (n={len(values)})"
    )


def mix_states(db: Database) -> float:
    """Turn the queued jobs into a history: 90 % succeeded, 5 % failed, 2 % cancelled,
    1 % running (leases far in the future), 2 % queued with ``not_before`` in 2099 (so
    no dispatcher would take them). Returns seconds."""
    t0 = time.perf_counter()
    far = datetime(2099, 1, 1, tzinfo=UTC)
    with db.engine.begin() as conn:
        m = jobs.c.seq % 100
        ended = sa.case((m < 90, "succeeded"), (m < 95, "failed"), else_="cancelled")
        conn.execute(
            jobs.update()
            .where(m < 97)
            .values(state=ended, ended_at=jobs.c.created_at, started_at=jobs.c.created_at)
        )
        conn.execute(
            jobs.update()
            .where(m == 97)
            .values(state="running", lease_owner="gone", lease_expires_at=far, node_id="gone")
        )
        conn.execute(jobs.update().where(m >= 98).values(not_before=far))
    analyze(db)
    return time.perf_counter() - t0


LIST_FILTERS: list[dict[str, str]] = [
    {},
    {"status": "queued"},
    {"status": "running"},
    {"status": "failed,cancelled"},
    {"job_type": "type-07"},
    {"job_type": "type-00"},
    {"priority": "high"},
    {"priority": "critical", "status": "queued"},
    {"submitted_by": "user3"},
    {"submitted_by": "user3", "status": "failed"},
    {"created_from": "2026-01-11T00:00:00Z"},  # the newest ≈ 9 % of the jobs
    {"created_to": "2026-01-02T00:00:00Z"},  # the oldest ≈ 9 %: below 900,000 newer
    {"created_from": "2026-01-06T00:00:00Z", "created_to": "2026-01-06T01:00:00Z"},
    {"id_prefix": "4a2"},
]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_pages(url: str, pages: int) -> None:
    """First page and a page after a deep cursor, per filter: p50/p95 of the request."""
    with (
        running_server(
            slots=1, database_url=url, extra_env={"JOBYARD_RUN_DISPATCHER": "false"}
        ) as server,
        server.client() as c,
    ):
        for flt in LIST_FILTERS:
            for deep in (False, True):
                params = {**flt, "limit": "50"}
                if deep:  # the cursor of a page 2,000 jobs down the list
                    mid = c.get("/v1/jobs", params={**flt, "limit": "500"}).json()
                    for _ in range(3):
                        if not mid["next_cursor"]:
                            break
                        mid = c.get(
                            "/v1/jobs",
                            params={**flt, "limit": "500", "cursor": mid["next_cursor"]},
                        ).json()
                    if not mid["next_cursor"]:
                        continue
                    params["cursor"] = mid["next_cursor"]
                resp = c.get("/v1/jobs", params=params)
                resp.raise_for_status()
                times = []
                cpu0 = _cpu_s(server.pid)
                for _ in range(pages):
                    t0 = time.perf_counter()
                    c.get("/v1/jobs", params=params).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                cpu_ms = (_cpu_s(server.pid) - cpu0) * 1000 / pages
                body = resp.json()
                label = "&".join(f"{k}={v}" for k, v in flt.items()) or "(no filter)"
                print(
                    f"  {label}{' +cursor' if deep else ''}: {fmt_ms(times)}; "
                    f"server CPU {cpu_ms:.1f} ms/request; {len(body['items'])} items, "
                    f"summary total {body['summary']['total']}",
                    flush=True,
                )


def explain(db: Database, stmt: sa.Executable, label: str) -> None:
    dialect = db.engine.dialect
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
    prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + sql).all()
    print(f"  -- {label}")
    for r in rows:
        print("     " + (str(r[-1]) if db.dialect == "sqlite" else str(r[0])))


def trigger_cost(db: Database, blocks: int = 24, block: int = 1000) -> None:
    """What the count triggers add to the write path: the median time of one single-row
    INSERT into jobs, one state UPDATE, and a row of a 1,000-row executemany (a batch),
    inside a transaction (no commit in the figure), in blocks cycling through: all
    triggers, all but ``job_hour_counts``' (when the revision has them: their own cost),
    none. The counts are wrong afterwards: run
    it on a scratch database only."""
    pg = db.dialect == "postgresql"
    with db.engine.connect() as conn:
        if pg:
            names = conn.exec_driver_sql(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass"
                " AND NOT tgisinternal"
            ).scalars()
            sql = {str(n): "" for n in names}
        else:
            found = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
            sql = {str(n): str(q) for n, q in found}
    hour = {n for n in sql if n.startswith("tr_jobs_hour_count")}
    setups = {"all triggers": set(sql), "without the hour counts'": set(sql) - hour}
    if not hour:
        del setups["without the hour counts'"]
    setups["without triggers"] = set()
    present = set(sql)

    def use(conn: sa.Connection, wanted: set[str]) -> None:
        for name in sorted(present - wanted):
            conn.exec_driver_sql(
                f"ALTER TABLE jobs DISABLE TRIGGER {name}" if pg else f"DROP TRIGGER {name}"
            )
        for name in sorted(wanted - present):
            conn.exec_driver_sql(f"ALTER TABLE jobs ENABLE TRIGGER {name}" if pg else sql[name])
        present.clear()
        present.update(wanted)

    rng = random.Random(3)
    ins = jobs.insert()
    upd = jobs.update().where(jobs.c.id == sa.bindparam("b_id")).values(state="starting")
    times: dict[str, tuple[list[float], list[float], list[float]]] = {
        k: ([], [], []) for k in setups
    }
    labels = list(setups)
    for b in range(blocks):
        label = labels[b % len(labels)]
        with db.engine.begin() as conn:
            use(conn, setups[label])
        rows = job_rows(10_000_000 + b * block, block, rng)
        with db.engine.begin() as conn:
            for row in rows:
                t0 = time.perf_counter()
                conn.execute(ins, row)
                times[label][0].append(time.perf_counter() - t0)
            for row in rows:
                t0 = time.perf_counter()
                conn.execute(upd, {"b_id": row["id"]})
                times[label][1].append(time.perf_counter() - t0)
        rows = job_rows(20_000_000 + b * block, block, rng)
        with db.engine.begin() as conn:  # a batch's rows in one executemany
            t0 = time.perf_counter()
            conn.execute(ins, rows)
            times[label][2].append((time.perf_counter() - t0) / block)
    for label in labels:
        ins_us = statistics.median(times[label][0]) * 1e6
        upd_us = statistics.median(times[label][1]) * 1e6
        many_us = statistics.median(times[label][2]) * 1e6
        print(
            f"  {label:26}: INSERT {ins_us:.1f} µs, state UPDATE {upd_us:.1f} µs,"
            f" a row of an executemany {many_us:.1f} µs (medians)"
        )


def job_filter(flt: dict[str, str]) -> Any:
    """The store's filter for the query parameters of one of ``LIST_FILTERS``."""
    from jobyard.domain.jobs import JobFilter
    from jobyard.domain.states import JobState

    def when(key: str) -> datetime | None:
        return datetime.fromisoformat(flt[key]) if key in flt else None

    return JobFilter(
        states=frozenset(JobState(v) for v in flt.get("status", "").split(",") if v),
        priorities=frozenset(Priority(v) for v in flt.get("priority", "").split(",") if v),
        job_type=flt.get("job_type"),
        submitted_by=flt.get("submitted_by"),
        created_from=when("created_from"),
        created_to=when("created_to"),
        id_prefix=flt.get("id_prefix"),
    )


def time_store(db: Database, n: int) -> None:
    """The store's part of a page, in-process (no HTTP): ``list_jobs`` of 50 and
    ``count_by_state``, per filter, ``n`` times each."""
    from jobyard.store.jobs import JobStore

    store = JobStore(db)
    for flt in LIST_FILTERS:
        f = job_filter(flt)
        pages, counts = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            store.list_jobs(TENANT, f, limit=50, cursor=None)
            t1 = time.perf_counter()
            store.count_by_state(TENANT, f)
            t2 = time.perf_counter()
            pages.append((t1 - t0) * 1000)
            counts.append((t2 - t1) * 1000)
        label = "&".join(f"{k}={v}" for k, v in flt.items()) or "(no filter)"
        print(f"  store {label}: list_jobs {fmt_ms(pages)}; count_by_state {fmt_ms(counts)}")


def explain_all(db: Database) -> None:
    """The plans of the statements the store runs for a page and its counts (caught as
    they run), and of the claim's."""
    from jobyard.domain.jobs import JobFilter
    from jobyard.domain.states import JobState
    from jobyard.store.jobs import JobStore

    store = JobStore(db)
    cases = [
        ("status=queued", JobFilter(states=frozenset({JobState.QUEUED}))),
        ("job_type=type-00", JobFilter(job_type="type-00")),
        ("priority=high", JobFilter(priorities=frozenset({Priority.HIGH}))),
    ] + [
        ("&".join(f"{k}={v}" for k, v in flt.items()), job_filter(flt))
        for flt in LIST_FILTERS
        if {"submitted_by", "created_from", "created_to"} & flt.keys()
    ]
    caught: list[tuple[str, Any]] = []

    def catch(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            caught.append((sql, params))

    for label, flt in cases:
        caught.clear()
        sa.event.listen(db.engine, "before_cursor_execute", catch)
        try:
            store.page(TENANT, flt, limit=50, cursor=None)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", catch)
        prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
        for i, (sql, params) in enumerate(caught):
            with db.engine.connect() as conn:
                rows = conn.exec_driver_sql(prefix + sql, params).all()
            print(f"  -- {label} [{i + 1}/{len(caught)}] {' '.join(sql.split())[:160]}")
            for r in rows:
                print("     " + (str(r[-1]) if db.dialect == "sqlite" else str(r[0])))
    claim = (
        sa.select(jobs.c.seq)
        .where(
            jobs.c.state == "queued",
            jobs.c.slots <= 2,
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= datetime.now(UTC)),
        )
        .order_by(jobs.c.sort_key, jobs.c.seq)
        .limit(50)
    )
    explain(db, claim, "claim select")


@contextmanager
def scratch_database(url: str | None, name: str = PG_DB) -> Iterator[str]:
    """A fresh SQLite file, or the fresh PostgreSQL database ``name`` (dropped
    afterwards) on the server of ``url``."""
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
        try:
            yield f"sqlite:///{tmp / 'jobyard.db'}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    admin_url = sa.make_url(url)
    scratch = admin_url.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url", help="PostgreSQL server (its database name is ignored)")
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000, help="queued jobs of the small claim")
    ap.add_argument("--claims", type=int, default=200, help="claims per block")
    ap.add_argument("--blocks", type=int, default=3, help="blocks of claims per size")
    ap.add_argument("--pages", type=int, default=200, help="requests per list case")
    ap.add_argument("--skip-list", action="store_true")
    ap.add_argument("--list-only", action="store_true", help="fill, then only the list pages")
    ap.add_argument("--trigger-cost", action="store_true", help="only time the job_counts triggers")
    args = ap.parse_args()
    print(machine_line())
    rng = random.Random(9)
    with scratch_database(args.database_url) as url:
        db = Database(url)
        try:
            migrate.upgrade(db)
            add_tenants(db)
            print(f"database {db.engine.url.render_as_string(hide_password=True)}")
            if args.trigger_cost:
                trigger_cost(db)
                return
            if args.list_only:
                with without_count_triggers(db):
                    took = fill(db, 0, args.jobs, rng)
                print(f"filled to {args.jobs:,} jobs in {took:.0f} s", flush=True)
            else:
                fill(db, 0, args.small, rng)
                analyze(db)
                claim = claimer(db)
                small = claim_blocks(claim, args.claims, args.blocks, f"{args.small:,}")
                with without_count_triggers(db):
                    took = fill(db, args.small, args.jobs, rng)
                analyze(db)
                print(f"filled to {args.jobs:,} jobs in {took:.0f} s (+ANALYZE)", flush=True)
                large = claim_blocks(claim, args.claims, args.blocks, f"{args.jobs:,}")
                print(
                    f"claim p50 ratio {large / small:.2f} (median of the blocks' p50s;"
                    " target <= 1.5)"
                )
            if args.skip_list:
                return
            with without_count_triggers(db):
                took = mix_states(db)
            print(f"mixed the states in {took:.0f} s")
            explain_all(db)
            time_store(db, args.pages)
        finally:
            db.dispose()
        time_pages(url, args.pages)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
