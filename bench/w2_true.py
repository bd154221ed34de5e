"""W2: 2,000 jobs of ``true`` submitted one by one through the SDK to ``--slots 2``.

Per round (fresh server and data dir): jobs per second from just before the first submit
to the largest ``ended_at`` (target: >= 1,000/s). The jobs run while the submits go on.

    .venv/bin/python bench/w2_true.py [--rounds 3] [--jobs 2000] [--argv]
    .venv/bin/python bench/w2_true.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

``true`` goes in as the string form (``/bin/sh -c true``); ``--argv`` sends ``["true"]``.
With ``--database-url`` each round runs on a fresh PostgreSQL database ``jobyard_bench``
(as in w3_submit.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil
from common import (
    all_jobs,
    inode_line,
    load_average,
    machine_line,
    parse_time,
    running_server,
    spread,
)
from w1_throughput import TERMINAL, cpu_s, wait_all_ended
from w3_submit import fresh_database

import jobyard

SLOTS = 2


@dataclass(frozen=True)
class Round:
    jobs_per_s: float
    submit_s: float
    server_cpu_ms_per_job: float


def run_round(jobs: int, argv: bool, database_url: str | None, poll_s: float) -> Round:
    entrypoint: str | list[str] = ["true"] if argv else "true"
    with (
        fresh_database(database_url) as url,
        running_server(slots=SLOTS, database_url=url) as server,
    ):
        client = jobyard.Client(server.url, server.api_key)
        client.list(limit=1)  # connect and authenticate once before the clock starts
        proc = psutil.Process(server.pid)
        cpu0 = cpu_s(proc)
        t0 = datetime.now(UTC)
        start = time.perf_counter()
        for _ in range(jobs):
            client.submit(entrypoint)
        submit_s = time.perf_counter() - start
        with server.client() as http:
            wait_all_ended(http, jobs, poll_s)
            server_cpu = cpu_s(proc) - cpu0
            items = all_jobs(http)
    failed = [j for j in items if j["status"] != "succeeded"]
    for j in failed[:10]:
        print(f"  job {j['id']} {j['status']}: {j['message']}", file=sys.stderr)
    assert len(items) == jobs, f"expected {jobs} jobs, the server lists {len(items)}"
    assert not failed, f"{len(failed)} of {jobs} jobs did not succeed"
    wall = (max(parse_time(str(j["ended_at"])) for j in items) - t0).total_seconds()
    return Round(jobs / wall, submit_s, server_cpu / jobs * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--argv", action="store_true", help='submit ["true"] instead of "true"')
    ap.add_argument("--database-url", help="PostgreSQL server (a fresh database per round)")
    ap.add_argument("--poll-ms", type=float, default=100, help="completion poll interval")
    args = ap.parse_args()
    print(machine_line())
    form = '["true"] (argv)' if args.argv else '"true" (via /bin/sh -c)'
    print(f"{args.jobs} jobs of {form}, {SLOTS} slots, submitted one by one with the SDK")
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        print(inode_line(), flush=True)
        r = run_round(args.jobs, args.argv, args.database_url, args.poll_ms / 1000)
        rounds.append(r)
        print(
            f"round {n}: {r.jobs_per_s:.0f} jobs/s; submits took {r.submit_s:.2f} s "
            f"({args.jobs / r.submit_s:.0f}/s); server CPU {r.server_cpu_ms_per_job:.1f} ms/job",
            flush=True,
        )
    print(f"jobs/s: {spread([r.jobs_per_s for r in rounds]).fmt(0)}  (target >= 1,000)")
    print(f"server CPU ms/job: {spread([r.server_cpu_ms_per_job for r in rounds]).fmt(1)}")
    print(f"load average at the end: {load_average()}; terminal states: {', '.join(TERMINAL)}")


if __name__ == "__main__":
    main()
