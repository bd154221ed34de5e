"""One dispatch step's store work alone: ``ClaimStore.step`` in-process, no process runs.
N jobs are inserted queued; then each step marks the job claimed by the step before
running, ends the one marked by the step before that, and claims one (``--same``: marks
and ends the job claimed by the step before, as when a job exits before its running mark
is written: W2's ``true``). Prints the thread CPU per step (the client's side only on
PostgreSQL).

    .venv/bin/python bench/claim_step.py [--jobs 1500] [--rounds 3] [--same]
    .venv/bin/python bench/claim_step.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import load_average, machine_line, spread
from dispatch_cpu import queue_jobs
from w3_submit import fresh_database

from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.settings import Settings
from jobyard.store import migrate
from jobyard.store.claims import AttemptEnd, ClaimRequest, ClaimStore, Started
from jobyard.wiring import build_services

REQUEST = ClaimRequest(node_id="n1", lease_ttl_s=30, max_slots=1, token_hashes=("h",))


def run_round(n: int, url: str | None, same: bool) -> tuple[int, float]:
    """Steps taken, and thread CPU µs per step."""
    data = Path(tempfile.mkdtemp(prefix="jobyard-step-"))
    services = build_services(Settings(data_dir=data, database_url=url, sandbox="off"))
    migrate.upgrade(services.db)
    services.auth.bootstrap()
    queue_jobs(services, n, ("true",))
    claims = ClaimStore(services.db, services.jobs.store)
    started: Started | None = None  # claimed by the step before
    running: Job | None = None  # marked running by the step before
    steps = 0
    cpu0 = time.thread_time()
    while True:
        now = services.clock.now()
        ending = running
        if same and started is not None:
            ending = started.job.evolve(state=JobState.RUNNING, started_at=now)
        ends = []
        if ending is not None:
            ends.append(AttemptEnd(ending, JobState.SUCCEEDED, "exit 0", exit_code=0))
        starts = [started] if started is not None else []
        step = claims.step(now=now, starts=starts, ends=ends, claim=REQUEST)
        steps += 1
        running = step.running[0] if step.running and not same else None
        started = None
        if step.claimed:
            started = Started(
                job=step.claimed[0], pid=1, create_time=1.0, node_id="n1", started_at=now
            )
        elif running is None:
            break
    cpu = time.thread_time() - cpu0
    services.close()
    return steps, cpu / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--same", action="store_true", help="each step marks and ends one job")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    print(machine_line())
    shape = "marks, ends the same job" if args.same else "marks one job, ends another"
    print(f"{args.jobs} queued jobs; each step {shape} and claims one")
    cpus = []
    for i in range(args.rounds):
        with fresh_database(args.database_url) as url:
            steps, cpu = run_round(args.jobs, url, args.same)
        cpus.append(cpu)
        print(f"round {i + 1}: {steps} steps; thread CPU {cpu:.0f} µs per step")
    print(f"thread CPU µs per step: {spread(cpus).fmt(0)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
