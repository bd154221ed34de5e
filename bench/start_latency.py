"""Start latency: submit → the job's process running, on a server with one idle slot.

Each job is ``[<python>, "-c", "import time; print(time.time())"]``: the process writes
its own timestamp once its interpreter is up. Per job, the latency is that timestamp
minus the wall clock just before the submit call, minus the interpreter's own start
time (the same command run directly, measured the same way: median of ``--calibrate``
runs before and after). Jobs go one at a time, each after the previous one ended, so
the slot is idle at every submit. Target: <= 10 ms p50 beyond the interpreter's start.

    .venv/bin/python bench/start_latency.py [--jobs 50] [--rounds 3]
    .venv/bin/python bench/start_latency.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from common import (
    describe_python,
    inode_line,
    load_average,
    machine_line,
    percentile,
    running_server,
    spread,
)
from w3_submit import fresh_database

import jobyard

STAMP = "import time; print(time.time())"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
POLL_S = 0.01
DEADLINE_S = 60.0


def interpreter_start_s(python: str, runs: int) -> float:
    """Median seconds from just before spawning ``python -c STAMP`` to its timestamp."""
    out = []
    for _ in range(runs):
        before = time.time()
        stamp = subprocess.run([python, "-c", STAMP], capture_output=True, text=True, check=True)
        out.append(float(stamp.stdout) - before)
    return statistics.median(out)


def job_latencies_s(python: str, jobs: int, database_url: str | None) -> list[float]:
    """Seconds from just before each submit to the job's own timestamp (fresh server)."""
    out = []
    with (
        fresh_database(database_url) as url,
        running_server(slots=1, database_url=url) as server,
    ):
        client = jobyard.Client(server.url, server.api_key)
        client.list(limit=1)  # connect and authenticate before the first measurement
        for _ in range(jobs):
            before = time.time()
            job = client.submit([python, "-c", STAMP])
            deadline = time.monotonic() + DEADLINE_S
            while job.status not in TERMINAL:  # the slot must be idle at the next submit
                if time.monotonic() > deadline:
                    sys.exit(f"job {job.id} did not end within {DEADLINE_S} s")
                time.sleep(POLL_S)
                job = client.get(job.id)
            if job.status != "succeeded":
                sys.exit(f"job {job.id} {job.status}: {job.message}")
            out.append(float(client.logs(job.id).split()[0]) - before)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=50, help="jobs per round")
    ap.add_argument("--calibrate", type=int, default=20, help="direct runs before and after")
    ap.add_argument("--python", default=sys.executable, help="interpreter of the jobs")
    ap.add_argument("--database-url", help="PostgreSQL server (a fresh database per round)")
    args = ap.parse_args()
    print(machine_line())
    print(f"interpreter: {describe_python(args.python)}; 1 slot; {args.jobs} jobs per round")
    p50s, p95s = [], []
    for n in range(1, args.rounds + 1):
        print(inode_line(), flush=True)
        before = interpreter_start_s(args.python, args.calibrate)
        total = job_latencies_s(args.python, args.jobs, args.database_url)
        after = interpreter_start_s(args.python, args.calibrate)
        own = (before + after) / 2
        extra_ms = [(t - own) * 1000 for t in total]
        p50s.append(percentile(extra_ms, 50))
        p95s.append(percentile(extra_ms, 95))
        print(
            f"round {n}: interpreter start {own * 1000:.1f} ms (before {before * 1000:.1f}, "
            f"after {after * 1000:.1f}); submit → running beyond it: p50 {p50s[-1]:.1f} ms, "
            f"p95 {p95s[-1]:.1f} ms, max {max(extra_ms):.1f} ms",
            flush=True,
        )
    print(f"p50 ms: {spread(p50s).fmt(1)}  (target <= 10)")
    print(f"p95 ms: {spread(p95s).fmt(1)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
