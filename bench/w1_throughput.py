"""W1: 200 jobs of ``python3 -c pass`` submitted at once to a server with 2 slots.

Per round: the floor (``seq 200 | xargs -P 2 -I{} <python> -c pass``) and jobyard's wall
time from the first submit to the last ``ended_at``, both with the same absolute
interpreter; the ratio jobyard / floor is the figure (target: <= 1.25).

    .venv/bin/python bench/w1_throughput.py [--rounds 3] [--jobs 200] [--shell]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import all_jobs, describe_python, parse_time, running_server, spread

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
POLL_S = 0.02
DEADLINE_S = 600.0
SLOTS = 2


@dataclass(frozen=True)
class Round:
    floor_s: float
    jobyard_s: float
    submit_s: float

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


def wait_all_ended(client: httpx.Client, jobs: int) -> None:
    """Poll the cheapest list call (limit=1) until ``summary.by_status`` counts them all."""
    deadline = time.monotonic() + DEADLINE_S
    params = {"status": ",".join(TERMINAL), "limit": "1"}
    while time.monotonic() < deadline:
        by_status = client.get("/v1/jobs", params=params).json()["summary"]["by_status"]
        if sum(by_status.get(s, 0) for s in TERMINAL) >= jobs:
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"the jobs did not all end within {DEADLINE_S} s")


def jobyard_round(python: str, jobs: int, shell: bool) -> tuple[float, float]:
    """(first submit -> last ended_at, submit phase) in seconds, on a fresh server."""
    entrypoint: str | list[str] = "python3 -c pass" if shell else [python, "-c", "pass"]
    # Pin PATH so that the shell form finds the same interpreter as the floor.
    path = f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin"
    with running_server(slots=SLOTS, extra_env={"PATH": path}) as server, server.client() as c:
        c.get("/v1/jobs", params={"limit": "1"}).raise_for_status()  # connect + auth warm
        t0 = datetime.now(UTC)
        start = time.perf_counter()
        for _ in range(jobs):
            c.post("/v1/jobs", json={"entrypoint": entrypoint}).raise_for_status()
        submit_s = time.perf_counter() - start
        wait_all_ended(c, jobs)
        items = all_jobs(c)
    failed = [j for j in items if j["status"] != "succeeded"]
    for j in failed[:10]:
        print(f"  job {j['id']} {j['status']}: {j['message']}", file=sys.stderr)
    assert len(items) == jobs, f"expected {jobs} jobs, the server lists {len(items)}"
    assert not failed, f"{len(failed)} of {jobs} jobs did not succeed"
    last_end = max(parse_time(str(j["ended_at"])) for j in items)
    return (last_end - t0).total_seconds(), submit_s


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
    args = ap.parse_args()
    python = os.path.abspath(args.python)
    if args.shell and not (Path(python).parent / "python3").exists():
        sys.exit(f"--shell needs a python3 beside {python}")
    form = "'python3 -c pass' via /bin/sh (PATH pinned)" if args.shell else "argv list"
    print(f"interpreter: {describe_python(python)}; jobs as {form}; {args.jobs} jobs, 2 slots")
    rounds: list[Round] = []
    for n in range(1, args.rounds + 1):
        floor = floor_seconds(python, args.jobs)
        wall, submit = jobyard_round(python, args.jobs, args.shell)
        rounds.append(Round(floor, wall, submit))
        print(
            f"round {n}: floor {floor:.2f} s, jobyard {wall:.2f} s "
            f"(submits took {submit:.2f} s), ratio {wall / floor:.2f}",
            flush=True,
        )
    print(f"floor s:   {spread([r.floor_s for r in rounds]).fmt()}")
    print(f"jobyard s: {spread([r.jobyard_s for r in rounds]).fmt()}")
    print(f"ratio:     {spread([r.ratio for r in rounds]).fmt()}  (target <= 1.25)")


if __name__ == "__main__":
    main()
