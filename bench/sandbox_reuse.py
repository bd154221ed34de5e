"""What a sandbox kept for several jobs would save: the CPU per job (every process, from a
throwaway cgroup) of N runs of a job, each in a sandbox of its own (the command
``Sandbox.command`` builds, started from a small shell loop) against the same N runs
inside one long-lived sandbox of the same command, where a launcher (Python, root inside
the sandbox, no capabilities outside it) forks each job, gives it a mount namespace of
its own with a fresh ``/tmp`` (``--fresh-tmp``), drops to the job's user (``nobody``, no
groups, ``no_new_privs``) and execs it.

    .venv/bin/python bench/sandbox_reuse.py [--runs 200] [--rounds 3] [--job true|python]

An experiment for a design choice (issue 9), not how jobyard runs jobs: the launcher here
sets no cgroup, no per-job working directory and no limits, which a real one would.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average, machine_line
from sandbox_cpu import cpu_meter, remove, without
from sandbox_parallel import variants

from jobyard.executors.sandbox import unavailable

LAUNCHER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_REC, MS_PRIVATE, PR_SET_NO_NEW_PRIVS = 0x20000, 0x4000, 1 << 18, 38
fresh = sys.argv[1] == "fresh"
for line in sys.stdin:
    argv = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            if fresh:
                if libc.unshare(CLONE_NEWNS) != 0:
                    os._exit(90)
                libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
                if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, b"mode=1777") != 0:
                    os._exit(91)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(f"{status}\\n")
    sys.stdout.flush()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--job", choices=("true", "python"), default="true")
    args = ap.parse_args()
    print(machine_line())
    if unavailable():
        sys.exit(f"no sandbox here: {unavailable()}")
    job = ["/bin/true"] if args.job == "true" else [sys.executable, "-c", "pass"]
    status_fd = os.open(os.devnull, os.O_WRONLY)
    full = without(variants(status_fd, job)["sandbox"], "--json-status-fd", 1)
    here = Path(tempfile.mkdtemp(prefix="jobyard-reuse-"))
    (here / "launcher.py").write_text(LAUNCHER)
    here.chmod(0o755)
    box = [*full[: full.index("--")], "--ro-bind", str(here), str(here), "--"]
    box += [sys.executable, str(here / "launcher.py")]
    group, usage = cpu_meter()
    line = f"{shlex.join(job)}\n"
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for _ in range(args.rounds):
            loop = (
                f"echo $$ > {group}/cgroup.procs; i=0; while [ $i -lt {args.runs} ]; "
                f"do {shlex.join(full)} >/dev/null || exit 9; i=$((i+1)); done"
            )
            before, start = usage(), time.perf_counter()
            subprocess.run(["/bin/sh", "-c", loop], check=True)
            took = time.perf_counter() - start
            results.setdefault("a sandbox per job", []).append(
                ((usage() - before) / args.runs / 1e6, took / args.runs * 1e3)
            )
            for mode, name in (
                ("plain", "one sandbox, jobs forked in it"),
                ("fresh", "the same, a fresh /tmp per job"),
            ):
                shell = f"echo $$ > {group}/cgroup.procs; exec {shlex.join([*box, mode])}"
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", shell],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert proc.stdin and proc.stdout
                proc.stdin.write(line)  # the launcher's own start is not counted
                proc.stdin.flush()
                if proc.stdout.readline().strip() != "0":
                    sys.exit("the launcher's first job failed")
                before, start = usage(), time.perf_counter()
                for _ in range(args.runs):
                    proc.stdin.write(line)
                    proc.stdin.flush()
                    if proc.stdout.readline().strip() != "0":
                        sys.exit("a job in the launcher failed")
                took = time.perf_counter() - start
                results.setdefault(name, []).append(
                    ((usage() - before) / args.runs / 1e6, took / args.runs * 1e3)
                )
                proc.stdin.close()
                proc.wait()
    finally:
        remove(group)
    print(f"job: {shlex.join(job)}; {args.runs} runs × {args.rounds} rounds, one at a time, median")
    for name, values in results.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"{name:34} {cpu:6.2f} ms CPU, {wall:6.2f} ms wall per job")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
