"""Batch submits: ``POST /v1/jobs/batch`` with 1,000 jobs a request, through the SDK's
``Client.submit_batch``. Target: >= 20,000 jobs/s.

    .venv/bin/python bench/batch_submit.py [--rounds 3] [--batches 20] [--size 1000]
    .venv/bin/python bench/batch_submit.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

The jobs are scheduled for 2099 (``--slots 1``: none of them runs), so the figure is the
accept path alone. Each round starts a fresh server, warms up with two batches, then
sends ``--batches`` batches one after the other. Server CPU is ``jobyard serve``'s
(without children) over the measured batches.
"""

from __future__ import annotations

import argparse
import time

import psutil
from common import load_average, machine_line, percentile, running_server, spread
from w3_submit import fresh_database

import jobyard

LATER = "2099-01-01T00:00:00Z"


def one_round(batches: int, size: int, database_url: str | None) -> tuple[float, float, float]:
    """(jobs/s, p50 ms per batch, server CPU µs per job)."""
    jobs = [{"entrypoint": "python3 -c pass", "scheduled_at": LATER} for _ in range(size)]
    with fresh_database(database_url) as url, running_server(slots=1, database_url=url) as srv:
        client = jobyard.Client(srv.url, srv.api_key, timeout=120)
        proc = psutil.Process(srv.pid)
        for _ in range(2):
            client.submit_batch(jobs)
        times: list[float] = []
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        for _ in range(batches):
            t = time.perf_counter()
            answer = client.submit_batch(jobs)
            times.append((time.perf_counter() - t) * 1000)
            if answer.created != size:
                raise RuntimeError(f"a batch created {answer.created} of {size} jobs")
        elapsed = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        client.close()
    total = batches * size
    return total / elapsed, percentile(times, 50), cpu / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    print(machine_line())
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.batches} batches of {args.size} jobs per round on {db}")
    rates, p50s, cpus = [], [], []
    for n in range(1, args.rounds + 1):
        rate, p50, cpu = one_round(args.batches, args.size, args.database_url)
        print(f"round {n}: {rate:,.0f} jobs/s; batch p50 {p50:.1f} ms; server CPU {cpu:.0f} µs/job")
        rates.append(rate)
        p50s.append(p50)
        cpus.append(cpu)
    print(f"jobs/s:          {spread(rates).fmt(0)}  (target >= 20,000)")
    print(f"batch p50 ms:    {spread(p50s).fmt(1)}")
    print(f"server CPU µs/job: {spread(cpus).fmt(0)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
