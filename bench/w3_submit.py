"""W3: 1,000 submits one by one from one keep-alive HTTP client.

The jobs are scheduled for 2099, so the dispatcher (``--slots 1``) never runs them and the
figure is the submit path alone: HTTP, auth, validation, the insert transaction(s).
Targets: >= 1,000 submits/s, p99 <= 5 ms.

    .venv/bin/python bench/w3_submit.py [--rounds 3] [--submits 1000]
    .venv/bin/python bench/w3_submit.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

With ``--database-url`` each round runs on a fresh database ``jobyard_bench`` (created on
that PostgreSQL server with psycopg and dropped afterwards; the URL's own database name is
ignored).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psycopg
from common import load_average, machine_line, percentile, running_server, spread
from psycopg import sql
from sqlalchemy.engine import make_url

WARMUP = 50
BENCH_DB = "jobyard_bench"
BODY = {"entrypoint": "python3 -c pass", "scheduled_at": "2099-01-01T00:00:00Z"}


@dataclass(frozen=True)
class Round:
    rate: float
    latencies_ms: list[float]

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """Yield ``url`` pointing at a new, empty ``jobyard_bench`` database; drop it after."""
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
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB))
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    try:
        yield parsed.set(database=BENCH_DB).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(drop)


def submit(client: httpx.Client) -> None:
    resp = client.post("/v1/jobs", json=BODY)
    if resp.status_code != 201:
        raise RuntimeError(f"submit answered {resp.status_code}: {resp.text}")


def one_round(submits: int, database_url: str | None) -> Round:
    with (
        fresh_database(database_url) as url,
        running_server(slots=1, database_url=url) as server,
        server.client() as client,
    ):
        for _ in range(WARMUP):
            submit(client)
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(submits):
            t = time.perf_counter()
            submit(client)
            latencies.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - start
    return Round(submits / elapsed, latencies)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=1000)
    ap.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in the data dir)")
    args = ap.parse_args()
    where = make_url(args.database_url).set(database=BENCH_DB) if args.database_url else None
    store = where.render_as_string(hide_password=True) if where else "SQLite (default data dir)"
    print(machine_line())
    print(f"{args.submits} submits (+{WARMUP} warm-up) per round on {store}")
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        r = one_round(args.submits, args.database_url)
        rounds.append(r)
        print(
            f"round {n}: {r.rate:,.0f} submits/s; latency ms p50 {r.pct(50):.2f}, "
            f"p90 {r.pct(90):.2f}, p99 {r.pct(99):.2f}, max {max(r.latencies_ms):.2f}",
            flush=True,
        )
    print(f"submits/s: {spread([r.rate for r in rounds]).fmt(0)}  (target >= 1,000)")
    print(f"p50 ms:    {spread([r.pct(50) for r in rounds]).fmt()}")
    print(f"p99 ms:    {spread([r.pct(99) for r in rounds]).fmt()}  (target <= 5)")
    print(f"max ms:    {spread([max(r.latencies_ms) for r in rounds]).fmt()}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
