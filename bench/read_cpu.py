"""Server CPU per request of the reads every client polls (issue 9).

A real ``jobyard serve`` (2 slots) runs ``--jobs`` jobs to their end (``true`` and
``false`` alternately: half succeed, half fail); then, for each read below, one
keep-alive client sends ``--warmup`` requests, then ``--requests`` more, and the
server's own CPU (user + system, from psutil, without its children) over those is
divided by their number. Every answer must be 200.

    .venv/bin/python bench/read_cpu.py [--jobs 50] [--requests 500] [--warmup 50]
    .venv/bin/python bench/read_cpu.py --database-url URL   # on a fresh PostgreSQL database
"""

from __future__ import annotations

import argparse
import time

import httpx
import psutil
from common import load_average, machine_line, running_server
from w3_submit import fresh_database

import jobyard

TERMINAL = ("succeeded", "failed")


def reads(job_id: str) -> list[str]:
    """The path of each read measured."""
    return [
        f"/v1/jobs/{job_id}",
        "/v1/jobs?limit=1",
        "/v1/jobs?status=succeeded,failed&limit=1",
        "/v1/jobs?limit=50",
        "/healthz",
    ]


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def wait_ended(http: httpx.Client, jobs: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        by_status = http.get("/v1/jobs", params={"limit": "1"}).json()["summary"]["by_status"]
        if sum(by_status.get(s, 0) for s in TERMINAL) >= jobs:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the {jobs} jobs did not end within 300 s")


def per_request_us(http: httpx.Client, proc: psutil.Process, path: str, n: int, warm: int) -> float:
    for _ in range(warm):
        assert http.get(path).status_code == 200
    before = cpu_s(proc)
    for _ in range(n):
        answer = http.get(path)
        assert answer.status_code == 200, answer.text
    return (cpu_s(proc) - before) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--database-url", help="PostgreSQL instead of SQLite")
    args = ap.parse_args()
    print(machine_line())
    with (
        fresh_database(args.database_url) as url,
        running_server(slots=2, database_url=url) as server,
        server.client() as http,
        jobyard.Client(server.url, server.api_key) as sdk,
    ):
        last = None
        for i in range(args.jobs):
            last = sdk.submit("true" if i % 2 == 0 else "false")
        assert last is not None
        wait_ended(http, args.jobs)
        proc = psutil.Process(server.pid)
        print(f"{args.jobs} jobs ended; {args.requests} requests each after {args.warmup}")
        for path in reads(last.id):
            us = per_request_us(http, proc, path, args.requests, args.warmup)
            label = path.replace(last.id, "{id}")
            print(f"GET {label:<44} {us:7.0f} us of server CPU per request", flush=True)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
