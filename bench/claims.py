"""The claim with fair share between tenants (issue 10): its cost with 1 and 100 tenants
and with 1,000 vs 1,000,000 queued jobs, and claims per second with 1, 2 and 4
dispatching nodes on one PostgreSQL.

``cost`` (default): a fresh database (SQLite file, or the PostgreSQL database
``jobyard_claims``, created and dropped) is migrated and filled by bulk inserts (the
rows of ``scale.py``), the jobs spread round-robin over ``--tenants`` tenants. Then
``ClaimStore.claim_next`` runs in-process in blocks (one claim, one transaction, as a
node with one free slot claims: the candidates, the fair-share choice, the claim, the
tenant's usage row, the commit), first with ``--small`` queued jobs, then after the fill
reaches ``--jobs``. Each block prints the wall time per claim and the CPU per claim of
this process (thread time) and, on PostgreSQL, of the server process serving the
connection (``/proc/<backend pid>/stat``): CPU is the steadier figure on a shared
machine. ``--plain`` also times claims without fair share (queue order only).

``nodes``: PostgreSQL only: ``--jobs`` (default 100,000) queued jobs over ``--tenants``
tenants; 1, 2 and 4 node processes (each its own ClaimStore, connection and usage rows)
claim ``--batch`` jobs per step for ``--seconds`` each; claims per second in all, and
the CPU per claim of the nodes and of PostgreSQL (every postgres process on the host).

    .venv/bin/python bench/claims.py [--tenants 100] [--jobs 1000000] [--database-url URL]
    .venv/bin/python bench/claims.py nodes --database-url URL [--tenants 10] [--batch 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import load_average, machine_line, percentile
from scale import CHUNK, analyze, job_rows, without_count_triggers

from jobyard.store import migrate
from jobyard.store.claims import ClaimRequest, ClaimStore
from jobyard.store.database import Database
from jobyard.store.tables import jobs, projects, tenants

PG_DB = "jobyard_claims"
TICK = os.sysconf("SC_CLK_TCK")


def tenant_ids(n: int) -> list[str]:
    return [f"t{i:03d}" for i in range(n)]


def add_tenants(db: Database, n: int) -> None:
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        for i, t in enumerate(tenant_ids(n)):
            conn.execute(
                tenants.insert().values(id=t, name=t, created_at=now, fair_share_weight=1 + i % 3)
            )
            conn.execute(
                projects.insert().values(tenant_id=t, id="default", name="Default", created_at=now)
            )


def fill(db: Database, start: int, end: int, n_tenants: int, rng: random.Random) -> float:
    """Queued jobs ``start`` … ``end - 1``, job i of tenant i mod ``n_tenants``."""
    ids = tenant_ids(n_tenants)
    t0 = time.perf_counter()
    for lo in range(start, end, CHUNK):
        rows = job_rows(lo, min(CHUNK, end - lo), rng)
        for k, row in enumerate(rows):
            row["tenant_id"] = ids[(lo + k) % n_tenants]
        with db.engine.begin() as conn:
            conn.execute(jobs.insert(), rows)
        if (lo - start) % 200_000 == 0 and lo > start:
            print(f"  … {lo:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_cpu() -> float:
    """CPU seconds of every postgres process on this host (0 where /proc hides them)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                total += proc_cpu(int(d.name))
        except OSError:
            continue
    return total


def backend_pid(store: ClaimStore) -> int | None:
    """The PostgreSQL server process of the store's (one pooled) connection."""
    if store.db.dialect != "postgresql":
        return None
    with store.db.read() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def claim_block(store: ClaimStore, n: int, label: str) -> dict[str, float]:
    """``n`` claims of one job each: wall ms p50/p95 and CPU µs per claim."""
    pid = backend_pid(store)
    store.claim_next(node_id="bench", now=datetime.now(UTC), lease_ttl_s=3600)  # warm
    times = []
    cpu0, srv0 = time.thread_time(), proc_cpu(pid) if pid else 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        job = store.claim_next(node_id="bench", now=datetime.now(UTC), lease_ttl_s=3600)
        times.append((time.perf_counter() - t0) * 1000)
        assert job is not None, "the queue ran dry"
    cpu = (time.thread_time() - cpu0) / n * 1e6
    srv = ((proc_cpu(pid) if pid else 0.0) - srv0) / n * 1e6
    out = {"p50": percentile(times, 50), "p95": percentile(times, 95), "cpu": cpu, "srv": srv}
    server = f", PostgreSQL backend {srv:.0f} µs" if pid else ""
    print(
        f"  {label}: p50 {out['p50']:.2f} ms, p95 {out['p95']:.2f} ms;"
        f" CPU per claim: client {cpu:.0f} µs{server} (n={n})",
        flush=True,
    )
    return out


def measure(db: Database, n_tenants: int, size: str, args: argparse.Namespace) -> None:
    variants = [("fair share", True)] + ([("plain", False)] if args.plain else [])
    for name, fair in variants:
        store = ClaimStore(db, fair_share=fair)
        label = f"{name}, {n_tenants} tenants, {size} queued"
        blocks = [
            claim_block(store, args.claims, f"{label}, block {b}")
            for b in range(1, args.blocks + 1)
        ]
        med = {k: statistics.median(b[k] for b in blocks) for k in ("p50", "cpu", "srv")}
        print(
            f"RESULT {name} tenants={n_tenants} queued={size}: p50 {med['p50']:.2f} ms,"
            f" client CPU {med['cpu']:.0f} µs, backend CPU {med['srv']:.0f} µs (medians)",
            flush=True,
        )


@contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    """A fresh SQLite file, or the fresh PostgreSQL database ``jobyard_claims``."""
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="jobyard-claims-"))
        try:
            yield f"sqlite:///{tmp / 'jobyard.db'}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    admin_url = sa.make_url(url)
    scratch = admin_url.set(database=PG_DB).render_as_string(hide_password=False)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {PG_DB}")
    try:
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.dispose()


def cost(args: argparse.Namespace) -> None:
    rng = random.Random(9)
    with scratch_database(args.database_url) as url:
        db = Database(url)
        try:
            migrate.upgrade(db)
            add_tenants(db, args.tenants)
            print(f"database {db.engine.url.render_as_string(hide_password=True)}")
            fill(db, 0, args.small, args.tenants, rng)
            analyze(db)
            measure(db, args.tenants, f"{args.small:,}", args)
            with without_count_triggers(db):
                took = fill(db, args.small, args.jobs, args.tenants, rng)
            analyze(db)
            print(f"filled to {args.jobs:,} jobs in {took:.0f} s (+ANALYZE)", flush=True)
            measure(db, args.tenants, f"{args.jobs:,}", args)
        finally:
            db.dispose()


def _node(url: str, k: int, batch: int, start_at: float, until: float, out: Any) -> None:
    """One dispatching node: claim ``batch`` jobs per step until ``until``."""
    db = Database(url)
    store = ClaimStore(db)
    request = ClaimRequest(
        node_id=f"node-{k}",
        lease_ttl_s=3600,
        max_slots=batch,
        token_hashes=tuple(f"h{i}" for i in range(batch)),
    )
    store.step(now=datetime.now(UTC), claim=request)  # warm
    while time.time() < start_at:
        time.sleep(0.001)
    claimed, cpu0 = 0, time.process_time()
    while time.time() < until:
        claimed += len(store.step(now=datetime.now(UTC), claim=request).claimed)
    out.put((claimed, time.process_time() - cpu0))
    db.dispose()


def nodes(args: argparse.Namespace) -> None:
    if not args.database_url:
        sys.exit("nodes: PostgreSQL only (--database-url)")
    rng = random.Random(9)
    with scratch_database(args.database_url) as url:
        db = Database(url)
        migrate.upgrade(db)
        add_tenants(db, args.tenants)
        with without_count_triggers(db):
            took = fill(db, 0, args.jobs, args.tenants, rng)
        analyze(db)
        db.dispose()
        print(f"{args.jobs:,} queued jobs over {args.tenants} tenants ({took:.0f} s)")
        ctx = mp.get_context("fork")
        for n in args.nodes:
            for _ in range(args.rounds):
                out: Any = ctx.Queue()
                start_at = time.time() + 1.0
                until = start_at + args.seconds
                procs = [
                    ctx.Process(target=_node, args=(url, k, args.batch, start_at, until, out))
                    for k in range(n)
                ]
                for p in procs:
                    p.start()
                while time.time() < start_at:
                    time.sleep(0.01)
                pg0 = postgres_cpu()
                results = [out.get() for _ in procs]
                pg = postgres_cpu() - pg0
                for p in procs:
                    p.join()
                claimed = sum(c for c, _ in results)
                node_cpu = sum(c for _, c in results)
                print(
                    f"RESULT nodes={n} batch={args.batch}: {claimed / args.seconds:,.0f} claims/s"
                    f" ({claimed:,} in {args.seconds:.0f} s); CPU per claim: nodes"
                    f" {node_cpu / max(claimed, 1) * 1e6:.0f} µs, PostgreSQL"
                    f" {pg / max(claimed, 1) * 1e6:.0f} µs; load {load_average()}",
                    flush=True,
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", choices=("cost", "nodes"), default="cost")
    ap.add_argument("--database-url", help="PostgreSQL server (its database name is ignored)")
    ap.add_argument("--tenants", type=int, default=None, help="cost: 100; nodes: 10")
    ap.add_argument("--jobs", type=int, default=None, help="cost: 1,000,000; nodes: 100,000")
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--claims", type=int, default=300, help="claims per block")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="also time claims without fair share")
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--batch", type=int, default=1, help="nodes: jobs claimed per step")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if args.tenants is None:
        args.tenants = 100 if args.mode == "cost" else 10
    if args.jobs is None:
        args.jobs = 1_000_000 if args.mode == "cost" else 100_000
    print(machine_line())
    (cost if args.mode == "cost" else nodes)(args)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
