"""Batch submits: ``POST /v1/jobs/batch`` with 1,000 jobs a request, through the SDK's
``Client.submit_batch``. Target: >= 20,000 jobs/s.

    .venv/bin/python bench/batch_submit.py [--rounds 3] [--batches 20] [--size 1000]
    .venv/bin/python bench/batch_submit.py --database-url postgresql+psycopg://…/x [--bench-db B]

The jobs are scheduled for 2099 (``--slots 1``: none of them runs), so the figure is the
accept path alone. Each round starts a fresh server, warms up with two batches, then
sends ``--batches`` batches one after the other. Server CPU is ``jobyard serve``'s
(without children) over the measured batches; on PostgreSQL also its backends' CPU
(as ``w3_submit.py`` measures it).
"""

from __future__ import annotations

import argparse
import time

import psutil
from common import load_average, machine_line, percentile, running_server, spread
from w3_submit import BENCH_DB, backend_cpu_s, fresh_database

import jobyard

LATER = "2099-01-01T00:00:00Z"


def one_round(
    batches: int, size: int, database_url: str | None, bench_db: str = BENCH_DB
) -> tuple[float, float, float, float | None]:
    """(jobs/s, p50 ms per batch, server CPU µs per job, PostgreSQL backends' CPU µs per
    job or None on SQLite)."""
    jobs = [{"entrypoint": "python3 -c pass", "scheduled_at": LATER} for _ in range(size)]
    with (
        fresh_database(database_url, bench_db) as url,
        running_server(slots=1, database_url=url) as srv,
    ):
        client = jobyard.Client(srv.url, srv.api_key, timeout=120)
        proc = psutil.Process(srv.pid)
        for _ in range(2):
            client.submit_batch(jobs)
        times: list[float] = []
        cpu0, backend0 = sum(proc.cpu_times()[:2]), backend_cpu_s(url)
        start = time.perf_counter()
        for _ in range(batches):
            t = time.perf_counter()
            answer = client.submit_batch(jobs)
            times.append((time.perf_counter() - t) * 1000)
            if answer.created != size:
                raise RuntimeError(f"a batch created {answer.created} of {size} jobs")
        elapsed = time.perf_counter() - start
        cpu, backend1 = sum(proc.cpu_times()[:2]) - cpu0, backend_cpu_s(url)
        client.close()
    total = batches * size
    backend = (
        (backend1 - backend0) / total * 1e6
        if backend0 is not None and backend1 is not None
        else None
    )
    return total / elapsed, percentile(times, 50), cpu / total * 1e6, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--bench-db", default=BENCH_DB, help="the scratch database's name")
    args = parser.parse_args()
    print(machine_line())
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.batches} batches of {args.size} jobs per round on {db}")
    rates, p50s, cpus, backends = [], [], [], []
    for n in range(1, args.rounds + 1):
        rate, p50, cpu, backend = one_round(
            args.batches, args.size, args.database_url, args.bench_db
        )
        pg = f"; PostgreSQL CPU {backend:.0f} µs/job" if backend is not None else ""
        print(
            f"round {n}: {rate:,.0f} jobs/s; batch p50 {p50:.1f} ms; "
            f"server CPU {cpu:.0f} µs/job{pg}"
        )
        rates.append(rate)
        p50s.append(p50)
        cpus.append(cpu)
        if backend is not None:
            backends.append(backend)
    print(f"jobs/s:          {spread(rates).fmt(0)}  (target >= 20,000)")
    print(f"batch p50 ms:    {spread(p50s).fmt(1)}")
    print(f"server CPU µs/job: {spread(cpus).fmt(0)}")
    if backends:
        print(f"PostgreSQL backends' CPU µs/job: {spread(backends).fmt(0)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
