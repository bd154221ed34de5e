"""What the job sandbox costs per job: CPU and wall time of starting, waiting for and
cleaning up one attempt of ``true``, through the executor the dispatcher uses, with the
sandbox (bubblewrap, cgroups, setpriv) and without it (a plain subprocess).

CPU is counted for the server process (``time.process_time``) and for everything it
started (``RUSAGE_CHILDREN``: ``sh``, ``bwrap``, ``setpriv``, ``true``), each per job.
The jobs run one at a time. Needs root and bubblewrap for the sandboxed half.

    .venv/bin/python bench/sandbox_cost.py [--jobs 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from common import load_average, machine_line

from jobyard.executors.base import Executor, LaunchSpec
from jobyard.executors.local import LocalExecutor
from jobyard.executors.sandbox import SandboxedExecutor, detect


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(executor: Executor, root: Path, jobs: int, user: str | None) -> tuple[float, float, float]:
    """Per job: server CPU ms, children CPU ms, wall ms."""
    specs = []
    for n in range(jobs):
        work = root / f"j{n}" / "work"
        work.mkdir(parents=True)
        if user is not None:
            os.chown(work, 65534, 65534)
        specs.append(
            LaunchSpec(
                job_id=f"j{n}",
                attempt=1,
                entrypoint=None,
                argv=("/bin/true",),
                workdir=work,
                log_path=root / f"j{n}" / "log",
                env={"PATH": "/usr/bin:/bin"},
                user=user,
                status_path=root / f"j{n}" / "exit",
                cpu_slots=1,
            )
        )
    cpu0, kids0, wall0 = time.process_time(), _children_cpu(), time.perf_counter()
    for spec in specs:
        handle = executor.start(spec)
        handle.wait(None)
        handle.cleanup()
    cpu, kids, wall = (
        time.process_time() - cpu0,
        _children_cpu() - kids0,
        time.perf_counter() - wall0,
    )
    return cpu * 1000 / jobs, kids * 1000 / jobs, wall * 1000 / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line(), f"load {load_average()}")
    with tempfile.TemporaryDirectory(prefix="jobyard-sbx-bench-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - the job user must reach its directory
        box, support = detect(node_id="bench", data_dir=Path(tmp) / "data", pids_max=1024)
        modes: list[tuple[str, Executor, str | None]] = [("plain subprocess", LocalExecutor(), None)]
        if box is not None:
            modes.append(("sandbox (bwrap + cgroups)", SandboxedExecutor(box), "nobody"))
        else:
            print(f"sandbox unavailable: {support.reason}")
        for name, executor, user in modes:
            rounds = [
                run(executor, Path(tmp) / f"{name[:5]}-{r}", args.jobs, user)
                for r in range(args.rounds)
            ]
            server, kids, wall = (statistics.median(x[i] for x in rounds) for i in range(3))
            print(
                f"{name:28} server CPU {server:6.2f} ms/job  children CPU {kids:6.2f} ms/job"
                f"  wall {wall:6.2f} ms/job  (median of {args.rounds} × {args.jobs})"
            )


if __name__ == "__main__":
    main()
