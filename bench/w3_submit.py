"""W3: 1,000 submits one by one through the SDK (``jobyard.Client.submit``).

The jobs are scheduled for 2099, so the dispatcher (``--slots 1``) never runs them and the
figure is the submit path alone: the SDK, HTTP, auth, validation, the insert transaction(s).
Targets: one client >= 2,500 submits/s with p99 <= 1.5 ms; 8 clients >= 5,000/s.

    .venv/bin/python bench/w3_submit.py [--rounds 3] [--submits 1000]
    .venv/bin/python bench/w3_submit.py --clients 8          # 8 processes, one Client each
    .venv/bin/python bench/w3_submit.py --raw-httpx          # a bare httpx.Client instead
    .venv/bin/python bench/w3_submit.py --null-server        # the client alone (see below)
    .venv/bin/python bench/w3_submit.py --null-server --null-delay-us 1500   # … answered later
    .venv/bin/python bench/w3_submit.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

Each client runs in its own process, warms up with 50 submits, then all start together
(a barrier). The rate is all clients' submits over the time from the first start to the
last end. Client CPU is each client process's CPU time over its measured submits; server
CPU is ``jobyard serve``'s (without children) over the same span. ``--null-server``
submits to an ASGI app that answers at once with a job (``common.null_app``) instead of
``jobyard serve``: what the client costs and allows by itself; ``--null-delay-us N`` makes it
answer N µs later (on its loop's timer), to see how the client's CPU per submit depends on
how long it waits for each answer.

With ``--database-url`` each round runs on a fresh database ``jobyard_bench`` (created on
that PostgreSQL server with psycopg and dropped afterwards; the URL's own database name is
ignored), or the one ``--bench-db`` names (two benchmarks on one server at a time).
There the CPU of that database's backends is given per submit too (the
``pg_stat_activity`` rows of the database, ``/proc/<pid>/stat``: a PostgreSQL on this
machine only): in W3 they run one after the other with the server, on the same cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

import psutil
import psycopg
from common import (
    Server,
    load_average,
    machine_line,
    percentile,
    running_null_server,
    running_server,
    spread,
)
from psycopg import sql
from sqlalchemy.engine import make_url

import jobyard

WARMUP = 50
BENCH_DB = "jobyard_bench"
ENTRYPOINT = "python3 -c pass"
SCHEDULED_AT = datetime(2099, 1, 1, tzinfo=UTC)
BODY = {"entrypoint": ENTRYPOINT, "scheduled_at": "2099-01-01T00:00:00Z"}
BARRIER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Round:
    rate: float
    latencies_ms: list[float]
    client_cpu_us: float  #: per submit, the mean over the clients
    server_cpu_us: float  #: per submit
    backend_cpu_us: float | None = None  #: per submit, PostgreSQL's backends (local)
    per_client_ms: list[list[float]] = field(default_factory=list)  #: in submit order

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


@dataclass(frozen=True)
class ClientRun:
    start: float  #: time.monotonic(), comparable across processes on Linux
    end: float
    cpu_s: float
    latencies_ms: list[float]


@contextmanager
def fresh_database(url: str | None, name: str = BENCH_DB) -> Iterator[str | None]:
    """Yield ``url`` pointing at a new, empty database ``name``; drop it after."""
    if url is None:
        yield None  # SQLite in the server's fresh data dir
        return
    parsed = make_url(url)
    admin = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": "postgres",
        "autocommit": True,
    }
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(drop)


def backend_cpu_s(url: str | None) -> float | None:
    """The CPU seconds (user + system, ``/proc/<pid>/stat``) of the PostgreSQL backends
    connected to ``url``'s database now (None on SQLite). Backends are processes of the
    local server: this works only for a PostgreSQL on this machine."""
    if url is None:
        return None
    parsed = make_url(url)
    admin = psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (parsed.database,)
        ).fetchall()
    total = 0
    for (pid,) in found:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile, or not on this machine
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def raw_submitter(server: Server) -> tuple[Callable[[], object], Callable[[], None]]:
    """(submit, close) with a bare keep-alive ``httpx.Client`` (the old W3)."""
    client = server.client()

    def submit() -> None:
        resp = client.post("/v1/jobs", json=BODY)
        if resp.status_code != 201:
            raise RuntimeError(f"submit answered {resp.status_code}: {resp.text}")

    return submit, client.close


def sdk_submitter(server: Server) -> tuple[Callable[[], object], Callable[[], None]]:
    """(submit, close) through ``jobyard.Client.submit``, what a user calls."""
    client = jobyard.Client(server.url, server.api_key)
    return lambda: client.submit(ENTRYPOINT, scheduled_at=SCHEDULED_AT), client.close


def run_client(
    server: Server, submits: int, raw_httpx: bool, barrier: Barrier, out: Connection
) -> None:
    """One client process: warm up, wait for the others, submit, send a ClientRun."""
    submit, close = (raw_submitter if raw_httpx else sdk_submitter)(server)
    try:
        for _ in range(WARMUP):
            submit()
        latencies: list[float] = []
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu0, start = time.process_time(), time.monotonic()
        for _ in range(submits):
            t = time.perf_counter()
            submit()
            latencies.append((time.perf_counter() - t) * 1000)
        end, cpu = time.monotonic(), time.process_time() - cpu0
    finally:
        close()
    out.send(ClientRun(start, end, cpu, latencies))


@contextmanager
def bench_server(
    database_url: str | None, bench_db: str, null: bool, null_delay_us: int = 0
) -> Iterator[tuple[Server, str | None]]:
    """``jobyard serve`` (on a fresh database, whose URL comes with it), or the null
    server (answering ``null_delay_us`` later)."""
    if null:
        with running_null_server(null_delay_us) as server:
            yield server, None
        return
    with (
        fresh_database(database_url, bench_db) as url,
        running_server(slots=1, database_url=url) as server,
    ):
        yield server, url


def one_round(
    submits: int,
    clients: int,
    raw_httpx: bool,
    database_url: str | None,
    null: bool,
    bench_db: str = BENCH_DB,
    null_delay_us: int = 0,
) -> Round:
    ctx = mp.get_context("fork")
    with bench_server(database_url, bench_db, null, null_delay_us) as (server, url):
        barrier = ctx.Barrier(clients + 1)
        pipes = [ctx.Pipe(duplex=False) for _ in range(clients)]
        procs = [
            ctx.Process(target=run_client, args=(server, submits, raw_httpx, barrier, send))
            for _, send in pipes
        ]
        for p in procs:
            p.start()
        served = psutil.Process(server.pid)
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu0, backend0 = served.cpu_times(), backend_cpu_s(url)
        runs: list[ClientRun] = [recv.recv() for recv, _ in pipes]
        cpu1, backend1 = served.cpu_times(), backend_cpu_s(url)
        for p in procs:
            p.join()
    total = submits * clients
    elapsed = max(r.end for r in runs) - min(r.start for r in runs)
    server_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return Round(
        rate=total / elapsed,
        latencies_ms=[ms for r in runs for ms in r.latencies_ms],
        per_client_ms=[r.latencies_ms for r in runs],
        client_cpu_us=sum(r.cpu_s for r in runs) / total * 1e6,
        server_cpu_us=server_cpu / total * 1e6,
        backend_cpu_us=(
            (backend1 - backend0) / total * 1e6
            if backend0 is not None and backend1 is not None
            else None
        ),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1, help="client processes (default 1)")
    ap.add_argument(
        "--raw-httpx", action="store_true", help="submit with a bare httpx.Client, not the SDK"
    )
    ap.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in the data dir)")
    ap.add_argument(
        "--bench-db", default=BENCH_DB, help=f"the scratch database's name (default {BENCH_DB})"
    )
    ap.add_argument(
        "--null-server", action="store_true", help="a server that answers at once (client alone)"
    )
    ap.add_argument(
        "--null-delay-us", type=int, default=0, help="the null server answers this much later"
    )
    ap.add_argument(
        "--latencies",
        metavar="FILE",
        help="write each round's per-submit latencies (ms, in order, per client) as JSON lines",
    )
    args = ap.parse_args()
    where = make_url(args.database_url).set(database=args.bench_db) if args.database_url else None
    store = where.render_as_string(hide_password=True) if where else "SQLite (default data dir)"
    if args.null_server:
        store = "the null server (common.null_app), not jobyard"
        if args.null_delay_us:
            store += f", answering {args.null_delay_us} us late"
    how = "a bare httpx.Client" if args.raw_httpx else "jobyard.Client.submit"
    target = ">= 2,500/s" if args.clients == 1 else ">= 5,000/s with 8 clients"
    print(machine_line())
    print(
        f"{args.clients} client(s) x {args.submits} submits (+{WARMUP} warm-up each) "
        f"through {how} per round on {store}"
    )
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        r = one_round(
            args.submits,
            args.clients,
            args.raw_httpx,
            args.database_url,
            args.null_server,
            args.bench_db,
            args.null_delay_us,
        )
        rounds.append(r)
        if args.latencies:
            with open(args.latencies, "a") as f:
                f.write(json.dumps({"round": n, "latencies_ms": r.per_client_ms}) + "\n")
        print(
            f"round {n}: {r.rate:,.0f} submits/s; latency ms p50 {r.pct(50):.2f}, "
            f"p90 {r.pct(90):.2f}, p99 {r.pct(99):.2f}, max {max(r.latencies_ms):.2f}; "
            f"CPU per submit: client {r.client_cpu_us:.0f} us, server {r.server_cpu_us:.0f} us"
            + (f", PostgreSQL {r.backend_cpu_us:.0f} us" if r.backend_cpu_us is not None else ""),
            flush=True,
        )
    print(f"submits/s: {spread([r.rate for r in rounds]).fmt(0)}  (target {target})")
    print(f"p50 ms:    {spread([r.pct(50) for r in rounds]).fmt()}")
    print(f"p99 ms:    {spread([r.pct(99) for r in rounds]).fmt()}  (target <= 1.5, one client)")
    print(f"max ms:    {spread([max(r.latencies_ms) for r in rounds]).fmt()}")
    print(f"client CPU us/submit: {spread([r.client_cpu_us for r in rounds]).fmt(0)}")
    print(f"server CPU us/submit: {spread([r.server_cpu_us for r in rounds]).fmt(0)}")
    backend = [r.backend_cpu_us for r in rounds if r.backend_cpu_us is not None]
    if backend:
        print(f"PostgreSQL backends' CPU us/submit: {spread(backend).fmt(0)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
