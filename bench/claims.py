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
the CPU per claim of the nodes and of PostgreSQL (the server processes of the
benchmark's connections).

    .venv/bin/python bench/claims.py [--tenants 100] [--jobs 1000000] [--database-url URL]
    .venv/bin/python bench/claims.py nodes --database-url URL [--tenants 10] [--batch 1]
    .venv/bin/python bench/claims.py notify --database-url URL [--listeners 0 10 50]
    .venv/bin/python bench/claims.py tenants [--tenants 100] [--plain] [--database-url URL]

``tenants``: 1 tenant and ``--tenants`` tenants side by side, in two databases of
``--small`` queued jobs, blocks alternating between them.

``notify``: PostgreSQL only: what a ``NOTIFY`` (how a submit wakes the other nodes,
``store/listen.py``) adds to a commit, with 0, 10 and 50 listening connections.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import load_average, machine_line, percentile
from scale import CHUNK, analyze, job_rows, scratch_database, without_count_triggers

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


def backends(url: str) -> list[int]:
    """The server processes of every connection to ``url``'s database (the machine is
    shared: other databases' backends are not counted)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        engine.dispose()
    return [int(pid) for (pid,) in rows]


def postgres_cpu(pids: list[int]) -> float:
    """CPU seconds of these PostgreSQL server processes (0 for those gone or hidden)."""
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu(pid)
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


class Queue:
    """The jobs filled so far; each block first adds as many as it will claim, so the
    number of queued jobs stays what the label says."""

    def __init__(self, db: Database, n_tenants: int) -> None:
        self.db, self.n_tenants, self.filled = db, n_tenants, 0
        self.rng = random.Random(9)

    def add(self, n: int) -> float:
        took = fill(self.db, self.filled, self.filled + n, self.n_tenants, self.rng)
        self.filled += n
        return took


def measure(queue: Queue, size: str, args: argparse.Namespace) -> None:
    variants = [("fair share", True)] + ([("plain", False)] if args.plain else [])
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    stores = {name: ClaimStore(queue.db, fair_share=fair) for name, fair in variants}
    for b in range(1, args.blocks + 1):  # the variants alternate: the load drifts
        for name, _ in variants:
            queue.add(args.claims + 1)
            label = f"{name}, {queue.n_tenants} tenants, {size} queued, block {b}"
            results[name].append(claim_block(stores[name], args.claims, label))
    for name, blocks in results.items():
        med = {k: statistics.median(b[k] for b in blocks) for k in ("p50", "cpu", "srv")}
        print(
            f"RESULT {name} tenants={queue.n_tenants} queued={size}: p50 {med['p50']:.2f} ms,"
            f" client CPU {med['cpu']:.0f} µs, backend CPU {med['srv']:.0f} µs (medians)",
            flush=True,
        )


def cost(args: argparse.Namespace) -> None:
    with scratch_database(args.database_url, PG_DB) as url:
        db = Database(url)
        try:
            migrate.upgrade(db)
            add_tenants(db, args.tenants)
            print(f"database {db.engine.url.render_as_string(hide_password=True)}")
            queue = Queue(db, args.tenants)
            queue.add(args.small)
            analyze(db)
            measure(queue, f"{args.small:,}", args)
            claimed = queue.filled - args.small
            with without_count_triggers(db):
                took = queue.add(args.jobs - args.small)
            analyze(db)
            print(f"filled to {args.jobs:,} queued jobs in {took:.0f} s (+ANALYZE)", flush=True)
            measure(queue, f"{args.jobs:,}", args)
            print(f"({claimed:,} claimed before the fill)")
        finally:
            db.dispose()


def tenants_ab(args: argparse.Namespace) -> None:
    """1 tenant against ``--tenants`` tenants in the same run: two scratch databases of
    ``--small`` queued jobs, blocks of claims alternating between them (the load of a
    shared machine drifts; alternating blocks see the same drift)."""
    with (
        scratch_database(args.database_url, "jobyard_t1") as url1,
        scratch_database(args.database_url, "jobyard_tn") as url_n,
    ):
        queues = {}
        for n, url in ((1, url1), (args.tenants, url_n)):
            db = Database(url)
            migrate.upgrade(db)
            add_tenants(db, n)
            queues[n] = Queue(db, n)
            queues[n].add(args.small)
            analyze(db)
        variants = [("fair share", True)] + ([("plain", False)] if args.plain else [])
        stores = {
            (n, name): ClaimStore(q.db, fair_share=fair)
            for n, q in queues.items()
            for name, fair in variants
        }
        results: dict[tuple[int, str], list[dict[str, float]]] = {k: [] for k in stores}
        for b in range(1, args.blocks + 1):
            for (n, name), store in stores.items():
                queues[n].add(args.claims + 1)
                label = f"{name}, {n} tenants, {args.small:,} queued, block {b}"
                results[(n, name)].append(claim_block(store, args.claims, label))
        for (n, name), blocks in results.items():
            med = {k: statistics.median(b[k] for b in blocks) for k in ("p50", "cpu", "srv")}
            print(
                f"RESULT {name} tenants={n}: p50 {med['p50']:.2f} ms, client CPU"
                f" {med['cpu']:.0f} µs, backend CPU {med['srv']:.0f} µs (medians)",
                flush=True,
            )
        for q in queues.values():
            q.db.dispose()


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
    with scratch_database(args.database_url, "jobyard_nodes") as url:
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
                while time.time() < start_at - 0.3:  # the nodes are connected by now
                    time.sleep(0.01)
                pids = backends(url)
                while time.time() < start_at:
                    time.sleep(0.01)
                pg0 = postgres_cpu(pids)
                results = [out.get() for _ in procs]
                pg = postgres_cpu(pids) - pg0
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


def _listener(dsn: str, ready: Any, stop: Any, got: list[float]) -> None:
    """One node's queue listener, as store/listen.py runs it: LISTEN, then wait."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        ready.release()
        while not stop.is_set():
            for n in conn.notifies(timeout=0.2):
                got.append(time.perf_counter() - float(n.payload))


NOTIFY_CHANNEL = "jobyard_bench"


def notify(args: argparse.Namespace) -> None:
    """Commits per second of a one-row write transaction with and without a NOTIFY, with
    0 to ``--listeners`` listening connections (each node of a cluster holds one), the
    delivery latency to the listeners, and PostgreSQL's CPU per commit."""
    import threading

    import psycopg

    if not args.database_url:
        sys.exit("notify: PostgreSQL only (--database-url)")
    with scratch_database(args.database_url, "jobyard_notify") as url:
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at float8)")
        for listeners in args.listeners:
            ready, stop = threading.Semaphore(0), threading.Event()
            got: list[float] = []
            threads = [
                threading.Thread(target=_listener, args=(dsn, ready, stop, got), daemon=True)
                for _ in range(listeners)
            ]
            for t in threads:
                t.start()
            for _ in threads:
                ready.acquire()
            with psycopg.connect(dsn) as conn:
                pids = backends(url)  # the writer's and the listeners'
                for with_notify in (False, True):
                    got.clear()
                    pg0, t0 = postgres_cpu(pids), time.perf_counter()
                    for _ in range(args.commits):
                        conn.execute("INSERT INTO bench_writes (at) VALUES (1)")
                        if with_notify:
                            conn.execute(f"NOTIFY {NOTIFY_CHANNEL}, '{time.perf_counter()!r}'")
                        conn.commit()
                    wall = time.perf_counter() - t0
                    deadline = time.time() + 10
                    while with_notify and len(got) < listeners * args.commits:
                        if time.time() > deadline:
                            break
                        time.sleep(0.05)
                    pg = postgres_cpu(pids) - pg0  # the listeners' share included
                    lat = sorted(got)
                    delivered = (
                        f"; delivered {len(lat):,}/{listeners * args.commits:,},"
                        f" latency p50 {percentile(lat, 50) * 1000:.1f} ms,"
                        f" p95 {percentile(lat, 95) * 1000:.1f} ms"
                        if with_notify and lat
                        else ""
                    )
                    print(
                        f"RESULT listeners={listeners} notify={with_notify}:"
                        f" {args.commits / wall:,.0f} commits/s, PostgreSQL CPU per commit"
                        f" {pg / args.commits * 1e6:.0f} µs{delivered}; load {load_average()}",
                        flush=True,
                    )
            stop.set()
            for t in threads:
                t.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = ("cost", "tenants", "nodes", "notify")
    ap.add_argument("mode", nargs="?", choices=modes, default="cost")
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
    ap.add_argument("--listeners", type=int, nargs="+", default=[0, 10, 50])
    ap.add_argument("--commits", type=int, default=2000, help="notify: commits per case")
    args = ap.parse_args()
    if args.tenants is None:
        args.tenants = 10 if args.mode == "nodes" else 100
    if args.jobs is None:
        args.jobs = 1_000_000 if args.mode == "cost" else 100_000
    print(machine_line())
    {"cost": cost, "tenants": tenants_ab, "nodes": nodes, "notify": notify}[args.mode](args)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
