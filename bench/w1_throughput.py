"""W1: 200 jobs of ``python3 -c pass`` submitted at once to a server with 2 slots.

Per round: jobyard's wall time from the first submit to the last ``ended_at`` (fresh
server and data dir each round), and the floor ``seq 200 | xargs -P 2 -I{} <python> -c
pass`` measured just before and just after it (mean of the two), both with the same
absolute interpreter; the ratio jobyard / floor is the figure (target: <= 1.25).

    .venv/bin/python bench/w1_throughput.py [--rounds 3] [--jobs 200] [--shell]
    .venv/bin/python bench/w1_throughput.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

The jobs are submitted one by one through the SDK (``jobyard.Client.submit``, what a
user calls). With ``--database-url`` each round runs on a fresh PostgreSQL database
(see w3_submit.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from common import (
    all_jobs,
    describe_python,
    inode_line,
    load_average,
    machine_line,
    parse_time,
    running_server,
    spread,
)
from w3_submit import fresh_database

import jobyard

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
DEADLINE_S = 600.0
SLOTS = 2


@dataclass(frozen=True)
class Round:
    floor_s: float
    jobyard_s: float
    submit_s: float
    server_cpu_s: float

    @property
    def ratio(self) -> float:
        return self.jobyard_s / self.floor_s


def floor_seconds(python: str, jobs: int) -> float:
    """Wall time of ``seq N | xargs -P 2 -I{} <python> -c pass``."""
    lines = "".join(f"{i}\n" for i in range(1, jobs + 1))
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(SLOTS), "-I{}", python, "-c", "pass"],
        input=lines.encode(),
        check=True,
    )
    return time.perf_counter() - start


def wait_all_ended(client: httpx.Client, jobs: int, poll_s: float) -> None:
    """Poll the cheapest list call (limit=1) until ``summary.by_status`` counts them all.
    The poll interval does not bound the result (that is the last ``ended_at``), so it can
    be slow enough not to steal CPU from the jobs."""
    deadline = time.monotonic() + DEADLINE_S
    params = {"status": ",".join(TERMINAL), "limit": "1"}
    while time.monotonic() < deadline:
        by_status = client.get("/v1/jobs", params=params).json()["summary"]["by_status"]
        if sum(by_status.get(s, 0) for s in TERMINAL) >= jobs:
            return
        time.sleep(poll_s)
    raise TimeoutError(f"the jobs did not all end within {DEADLINE_S} s")


def job_path(python: str) -> str:
    """The server's PATH: the shell form must find the same interpreter as the floor."""
    return f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin"


def cpu_s(proc: psutil.Process) -> float:
    """CPU time of ``proc`` itself (user + system), without its children."""
    times = proc.cpu_times()
    return times.user + times.system


def jobyard_round(
    python: str, jobs: int, shell: bool, poll_s: float, database_url: str | None
) -> tuple[float, float, float]:
    """(first submit -> last ended_at, submit phase, server CPU) in seconds, on a fresh
    server."""
    entrypoint: str | list[str] = "python3 -c pass" if shell else [python, "-c", "pass"]
    path = job_path(python)
    with (
        fresh_database(database_url) as url,
        running_server(slots=SLOTS, database_url=url, extra_env={"PATH": path}) as server,
        server.client() as c,
        jobyard.Client(server.url, server.api_key) as sdk,
    ):
        sdk.list(limit=1)  # connect + auth warm
        proc = psutil.Process(server.pid)
        cpu0 = cpu_s(proc)
        t0 = datetime.now(UTC)
        start = time.perf_counter()
        for _ in range(jobs):
            sdk.submit(entrypoint)
        submit_s = time.perf_counter() - start
        wait_all_ended(c, jobs, poll_s)
        server_cpu = cpu_s(proc) - cpu0
        items = all_jobs(c)
    failed = [j for j in items if j["status"] != "succeeded"]
    for j in failed[:10]:
        print(f"  job {j['id']} {j['status']}: {j['message']}", file=sys.stderr)
    assert len(items) == jobs, f"expected {jobs} jobs, the server lists {len(items)}"
    assert not failed, f"{len(failed)} of {jobs} jobs did not succeed"
    last_end = max(parse_time(str(j["ended_at"])) for j in items)
    return (last_end - t0).total_seconds(), submit_s, server_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="absolute interpreter for the floor and the jobs (default: this venv's python)",
    )
    ap.add_argument("--shell", action="store_true", help="submit the string 'python3 -c pass'")
    ap.add_argument("--poll-ms", type=float, default=100, help="completion poll interval")
    ap.add_argument("--database-url", help="PostgreSQL: a fresh database per round")
    args = ap.parse_args()
    python = os.path.abspath(args.python)
    if args.shell and not (Path(python).parent / "python3").exists():
        sys.exit(f"--shell needs a python3 beside {python}")
    form = "argv list"
    if args.shell:
        found = shutil.which("python3", path=job_path(python))
        form = f"'python3 -c pass' via /bin/sh, PATH pinned so python3 is {found}"
    print(machine_line())
    print(f"interpreter: {describe_python(python)}; jobs as {form}; {args.jobs} jobs, 2 slots")
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        # The floor brackets the jobyard run: the machine's load drifts between rounds.
        print(inode_line(), flush=True)
        before = floor_seconds(python, args.jobs)
        wall, submit, cpu = jobyard_round(
            python, args.jobs, args.shell, args.poll_ms / 1000, args.database_url
        )
        after = floor_seconds(python, args.jobs)
        floor = (before + after) / 2
        rounds.append(Round(floor, wall, submit, cpu))
        print(
            f"round {n}: floor {floor:.2f} s (before {before:.2f}, after {after:.2f}), "
            f"jobyard {wall:.2f} s, ratio {wall / floor:.2f}; submits took {submit:.2f} s; "
            f"server CPU {cpu:.2f} s ({cpu / args.jobs * 1000:.1f} ms/job)",
            flush=True,
        )
    print(f"floor s:   {spread([r.floor_s for r in rounds]).fmt()}")
    print(f"jobyard s: {spread([r.jobyard_s for r in rounds]).fmt()}")
    print(f"ratio:     {spread([r.ratio for r in rounds]).fmt()}  (target <= 1.25)")
    print(
        f"server CPU ms/job: {spread([r.server_cpu_s / args.jobs * 1000 for r in rounds]).fmt(1)}"
    )
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
