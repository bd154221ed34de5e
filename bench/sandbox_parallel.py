"""The job sandbox alone, two at a time as W1 runs them: N runs of ``<python> -c pass``
on 2 threads, bare and inside the bubblewrap command jobyard builds (namespaces,
mounts, ``setpriv``; no cgroups, no server), and what dropping one part of it saves.
The wall time per job and slot compares with W1's floor (the bare runs).

    .venv/bin/python bench/sandbox_parallel.py [--jobs 100] [--rounds 2] [--job python|true]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import load_average, machine_line

from jobyard.executors.base import LaunchSpec
from jobyard.executors.sandbox import Sandbox, python_paths, unavailable


def variants(status_fd: int, job: list[str] | None = None) -> dict[str, list[str]]:
    box = Sandbox(
        bwrap=shutil.which("bwrap") or "bwrap",
        setpriv=shutil.which("setpriv") or "setpriv",
        read_only=tuple(python_paths()),
        cgroups=None,
        pids_max=None,
    )
    work = Path(tempfile.mkdtemp(prefix="jobyard-sbx-"))
    work.chmod(0o777)
    job = job or [sys.executable, "-c", "pass"]
    spec = LaunchSpec(
        job_id="j",
        attempt=1,
        entrypoint=None,
        argv=tuple(job),
        workdir=work,
        log_path=work / "log",
        env={},
        status_path=work / "exit",
        cpu_slots=1,
    )
    full = box.command(spec, job, status_fd=status_fd)
    return {
        "bare": job,
        "sandbox": full,
        "sandbox without its IPC namespace": [a for a in full if a != "--unshare-ipc"],
        "sandbox without setpriv": [*full[: full.index("--") + 1], *job],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--job", choices=("python", "true"), default="python")
    args = ap.parse_args()
    print(machine_line())
    if unavailable():
        sys.exit(f"no sandbox here: {unavailable()}")
    status_fd = os.open(os.devnull, os.O_WRONLY)  # bubblewrap's JSON status goes nowhere

    def run(argv: list[str]) -> None:
        subprocess.run(argv, pass_fds=(status_fd,), check=True)

    job = [sys.executable, "-c", "pass"] if args.job == "python" else ["/bin/true"]
    print(f"job: {' '.join(job)}; {args.jobs} runs, 2 at a time, best of {args.rounds}")
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, argv in variants(status_fd, job).items():
            start = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(run, [argv] * args.jobs))
            took = time.perf_counter() - start
            best[name] = min(best.get(name, took), took)
    for name, took in best.items():
        per_slot = took / args.jobs * 2 * 1e3
        ratio = took / best["bare"]
        rate = args.jobs / took
        print(
            f"{name:36} {per_slot:6.2f} ms per job and slot, {rate:5.0f} jobs/s ({ratio:.2f}× bare)"
        )
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
