"""W1 on Ray: N jobs of ``python3 -c pass`` through jobyard's Ray executor, against the
same N jobs submitted to Ray Jobs itself with ``ray job submit``.

Both run on the cluster at ``--ray-address`` (start one with ``ray start --head
--include-dashboard=true``), each job reserving one CPU (``--entrypoint-num-cpus 1``;
jobyard: a job's slot), so as many run at once as the cluster has CPUs. Figures: wall
time from the first submit to the last job's end (Ray's ``end_time``, jobyard's
``ended_at``), and per job.

    .venv/bin/python bench/ray_w1.py --ray-address http://127.0.0.1:8265 [--jobs 200]
        [--rounds 4] [--ray-client cli|sdk] [--skip-ray] [--skip-jobyard]

``--ray-client cli`` (default) runs ``ray job submit --no-wait`` once per job, as a
user would; ``sdk`` calls ``JobSubmissionClient.submit_job`` in this process (what
jobyard's executor calls).

``--rounds R`` splits the jobs into R rounds per side, alternating Ray alone and
jobyard (Ray, jobyard, Ray, …), so that the drift of a shared machine's load falls on
both; each round is timed on its own and the figures are the sums. jobyard's server
(a fresh one per round) also reports its CPU time over the round (its start excluded).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
from common import all_jobs, load_average, machine_line, parse_time, running_server

import jobyard

TERMINAL_RAY = ("SUCCEEDED", "FAILED", "STOPPED")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
DEADLINE_S = 3600.0
#: completion polls: rare, so that they load neither side (the end times are Ray's and
#: jobyard's own, not the poll's)
POLL_S = 2.0
RAY = str(Path(sys.executable).parent / "ray")


def ray_alone(address: str, jobs: int, how: str) -> tuple[float, int]:
    """Submit to Ray Jobs directly; (wall seconds, jobs that succeeded)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    tag = f"bench-{int(time.time())}"
    start = time.time()
    ids = []
    for i in range(jobs):
        sid = f"{tag}-{i}"
        if how == "cli":
            subprocess.run(
                [RAY, "job", "submit", "--address", address, "--no-wait", "--submission-id", sid,
                 "--entrypoint-num-cpus", "1", "--", "python3", "-c", "pass"],
                check=True, capture_output=True,
            )  # fmt: skip
        else:
            client.submit_job(
                entrypoint="python3 -c pass", submission_id=sid, entrypoint_num_cpus=1
            )
        ids.append(sid)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        mine = [j for j in client.list_jobs() if j.submission_id in set(ids)]
        if len(mine) == jobs and all(str(j.status.value) in TERMINAL_RAY for j in mine):
            break
        time.sleep(POLL_S)
    else:
        sys.exit("Ray did not finish the jobs in time")
    end = max(j.end_time or 0 for j in mine) / 1000.0
    ok = sum(1 for j in mine if str(j.status.value) == "SUCCEEDED")
    return end - start, ok


def through_jobyard(address: str, jobs: int, slots: int) -> tuple[float, int, float]:
    """Submit to jobyard with the Ray executor; (wall seconds, jobs that succeeded, the
    server's CPU seconds from the first submit to the last job's end)."""
    env = {"JOBYARD_EXECUTOR": "ray", "JOBYARD_RAY_ADDRESS": address}
    with running_server(slots=slots, extra_env=env) as server, server.client() as client:
        proc = psutil.Process(server.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        start = datetime.now(UTC)
        for _ in range(jobs):
            r = client.post("/v1/jobs", json={"entrypoint": ["python3", "-c", "pass"]})
            r.raise_for_status()
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            found = all_jobs(client)
            if len(found) == jobs and all(j["status"] in TERMINAL for j in found):
                break
            time.sleep(POLL_S)
        else:
            sys.exit(f"jobyard did not finish the jobs in time (log: {server.log_path})")
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        end = max(parse_time(str(j["ended_at"])) for j in found)
        ok = sum(1 for j in found if j["status"] == "succeeded")
        return (end - start).total_seconds(), ok, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-address", required=True)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ray-client", choices=("cli", "sdk"), default="cli")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-jobyard", action="store_true")
    args = parser.parse_args()
    r = httpx.get(f"{args.ray_address}/api/v0/nodes?limit=1000", timeout=10).json()
    cpus = int(sum(n["resources_total"].get("CPU", 0) for n in r["data"]["result"]["result"]))
    print(machine_line())
    print(f"jobyard {jobyard.__file__}; Ray cluster {args.ray_address} with {cpus} CPUs")
    print(f"{args.jobs} jobs of `python3 -c pass`, each reserving 1 CPU, in {args.rounds} rounds")
    sizes = [args.jobs // args.rounds + (i < args.jobs % args.rounds) for i in range(args.rounds)]
    totals: dict[str, list[float]] = {"ray": [0.0, 0], "jobyard": [0.0, 0]}
    server_cpu = 0.0
    for i, n in enumerate(sizes, 1):
        if not args.skip_ray:
            wall, ok = ray_alone(args.ray_address, n, args.ray_client)
            totals["ray"][0] += wall
            totals["ray"][1] += ok
            print(
                f"round {i} Ray Jobs alone ({args.ray_client}): {n} jobs {wall:.1f} s,"
                f" {wall / n * 1000:.0f} ms per job, {ok} succeeded; load {load_average()}",
                flush=True,
            )
        if not args.skip_jobyard:
            wall, ok, cpu = through_jobyard(args.ray_address, n, cpus)
            totals["jobyard"][0] += wall
            totals["jobyard"][1] += ok
            server_cpu += cpu
            print(
                f"round {i} jobyard → Ray: {n} jobs {wall:.1f} s, {wall / n * 1000:.0f} ms per"
                f" job, {ok} succeeded, server CPU {cpu / n * 1000:.0f} ms per job;"
                f" load {load_average()}",
                flush=True,
            )
    for side, (total, succeeded) in totals.items():
        if total:
            print(
                f"total {side}: {total:.1f} s for {args.jobs} jobs, {total / args.jobs * 1000:.0f}"
                f" ms per job, {succeeded:.0f} succeeded"
            )
    if server_cpu:
        print(f"jobyard server CPU: {server_cpu / args.jobs * 1000:.0f} ms per job")


if __name__ == "__main__":
    main()
