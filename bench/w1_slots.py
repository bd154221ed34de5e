"""Where a W1 job's time goes per slot: 200 jobs of ``<python> -c pass`` on a server
with 2 slots (sandboxed unless ``--sandbox off``), then, from the jobs' own records,
the median time a job holds its slot (``started_at`` → ``ended_at``: the sandbox's
start and end included) and the gap from an end to the next start (the claim loop's
step, the job's setup and its spawn).

    .venv/bin/python bench/w1_slots.py [--jobs 200] [--sandbox off]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import all_jobs, load_average, machine_line, parse_time, running_server

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--sandbox", default="auto", help="the server's JOBYARD_SANDBOX")
    args = ap.parse_args()
    print(machine_line())
    env = {"JOBYARD_SANDBOX": args.sandbox}
    with running_server(slots=2, extra_env=env) as server, server.client() as client:
        body = {"entrypoint": [sys.executable, "-c", "pass"]}
        for _ in range(args.jobs):
            client.post("/v1/jobs", json=body).raise_for_status()
        while True:
            items = all_jobs(client)
            if all(j["status"] in TERMINAL for j in items):
                break
            time.sleep(0.2)
    runs = sorted(
        (parse_time(str(j["started_at"])), parse_time(str(j["ended_at"])))
        for j in items
        if j["started_at"]
    )
    held = [(end - start).total_seconds() * 1e3 for start, end in runs]
    ends = sorted(end for _, end in runs)
    gaps = []
    for start, _ in runs[2:]:  # the first two start on idle slots
        before = [end for end in ends if end <= start]
        if before:
            gaps.append((start - before[-1]).total_seconds() * 1e3)
    span = (ends[-1] - runs[0][0]).total_seconds()
    print(
        f"sandbox {args.sandbox}: a job holds its slot {statistics.median(held):.1f} ms "
        f"(median), end → next start {statistics.median(gaps):.1f} ms (median); "
        f"first start → last end {span:.2f} s"
    )
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
