"""The dispatcher alone, without HTTP: N jobs are inserted queued (dispatcher stopped),
then the dispatcher starts and runs them on ``--slots`` (default 2); prints jobs per
second and the process's CPU per job during that phase (the server's side of W1/W2
minus the submits and the polls).

    .venv/bin/python bench/dispatch_cpu.py [--jobs 500] [--python] [--rounds 3] [--sandbox off]
    .venv/bin/python bench/dispatch_cpu.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x
    .venv/bin/python bench/dispatch_cpu.py --shared-storage   # logs also on a storage dir

Jobs are ``["true"]`` (``--python``: ``[<python>, "-c", "pass"]``). Each round uses a
fresh data directory (SQLite) or a fresh database ``jobyard_bench`` (PostgreSQL).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from common import load_average, machine_line, spread
from w3_submit import fresh_database

from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import TERMINAL, JobState
from jobyard.settings import Settings
from jobyard.store import migrate
from jobyard.store.tables import jobs
from jobyard.wiring import Services, build_services


def _cpu_s() -> tuple[float, float]:
    """User and system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def queue_jobs(services: Services, n: int, argv: tuple[str, ...]) -> None:
    """Insert ``n`` queued jobs of ``argv`` for the default tenant, in queue order."""
    now = services.clock.now()
    for i in range(n):
        services.jobs.store.insert(
            tenant_id="default",
            spec=JobSpec(argv=argv),
            state=JobState.QUEUED,
            sort_key=float(i),
            now=now,
            request_hash=None,
            message="queued",
        )


def run_round(
    n: int,
    slots: int,
    argv: tuple[str, ...],
    url: str | None,
    sandbox: str = "auto",
    shared_storage: bool = False,
) -> tuple[float, float, float]:
    """Jobs per second, CPU ms per job, and the system part of it."""
    data = Path(tempfile.mkdtemp(prefix="jobyard-dispatch-"))
    storage = str(data / "shared") if shared_storage else None
    settings = Settings(
        data_dir=data, database_url=url, slots=slots, sandbox=sandbox, storage_url=storage
    )
    services = build_services(settings)
    migrate.upgrade(services.db)
    services.auth.bootstrap()
    queue_jobs(services, n, argv)
    assert services.dispatcher is not None
    unfinished = sa.select(sa.func.count()).where(jobs.c.state.notin_([s.value for s in TERMINAL]))
    cpu0, t0 = _cpu_s(), time.monotonic()
    services.dispatcher.start()
    while True:
        with services.db.read() as conn:
            if not conn.execute(unfinished).scalar():
                break
        time.sleep(0.1)
    (user1, sys1), wall = _cpu_s(), time.monotonic() - t0
    cpu, sys_cpu = user1 + sys1 - sum(cpu0), sys1 - cpu0[1]
    with services.db.read() as conn:
        bad = conn.execute(
            sa.select(sa.func.count()).where(jobs.c.state != JobState.SUCCEEDED.value)
        ).scalar()
    services.close()
    if bad:
        print(f"  {bad} jobs did not succeed")
    return n / wall, cpu / n * 1000, sys_cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", action="store_true", help="jobs run python -c pass")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--sandbox", default="auto", choices=("auto", "off"))
    parser.add_argument(
        "--shared-storage",
        action="store_true",
        help="a --storage-url directory: logs are copied there (several nodes)",
    )
    args = parser.parse_args()
    argv = (sys.executable, "-c", "pass") if args.python else ("true",)
    print(machine_line())
    print(f"{args.jobs} jobs of {' '.join(argv)!r}, {args.slots} slots, dispatcher in-process")
    rates, cpus = [], []
    for i in range(args.rounds):
        with fresh_database(args.database_url) as url:
            rate, cpu, sys_cpu = run_round(
                args.jobs, args.slots, argv, url, args.sandbox, args.shared_storage
            )
        rates.append(rate)
        cpus.append(cpu)
        print(
            f"round {i + 1}: {rate:.0f} jobs/s; dispatcher CPU {cpu:.2f} ms/job"
            f" (system {sys_cpu:.2f})"
        )
    print(f"jobs/s: {spread(rates).fmt(0)}")
    print(f"dispatcher CPU ms/job: {spread(cpus).fmt(2)}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
