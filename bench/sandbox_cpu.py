"""The CPU of one sandboxed start, all processes counted (bwrap, the sandbox's PID 1,
setpriv, the job), by part: N runs of a job in a shell loop inside a throwaway cgroup
whose CPU usage is read before and after (cgroup v1 ``cpuacct`` or v2 ``cpu.stat``).
``rusage`` of children misses the sandbox's PID 1 and what it reaps; a cgroup does not.

    .venv/bin/python bench/sandbox_cpu.py [--runs 60] [--rounds 4] [--job true|python]

Variants: the job bare; the command jobyard builds (``Sandbox.command``: namespaces,
mounts, ``setpriv``; no job cgroups, no server); the same without one part at a time;
bwrap with only the system directories. Rounds interleave the variants; the median of
the rounds is printed. The shell loop's own fork and exec are in every figure (the bare
``true`` row shows them). Needs root, bubblewrap and a writable cgroup hierarchy.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import load_average, machine_line
from sandbox_parallel import variants

from jobyard.executors.sandbox import unavailable

_V1 = Path("/sys/fs/cgroup/cpuacct")
_V2 = Path("/sys/fs/cgroup")


def cpu_meter() -> tuple[Path, Callable[[], int]]:
    """A fresh cgroup and a reader of its CPU usage in ns."""
    if (_V1 / "cpuacct.usage").exists():
        group = _V1 / f"jobyard-bench-{os.getpid()}"
        group.mkdir()
        return group, lambda: int((group / "cpuacct.usage").read_text())
    group = _V2 / f"jobyard-bench-{os.getpid()}"
    group.mkdir()

    def usage() -> int:
        for line in (group / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) * 1000
        raise SystemExit("cpu.stat has no usage_usec")

    return group, usage


def remove(group: Path) -> None:
    """Removes ``group`` once the last sandbox's processes have left it (a PID namespace
    is torn down after its parent has been told the exit)."""
    for _ in range(500):
        try:
            group.rmdir()
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    print(f"left behind, busy: {group}", file=sys.stderr)


def without(argv: list[str], option: str, values: int) -> list[str]:
    """``argv`` without ``option`` and its ``values`` arguments (and a ``--perms`` just
    before it)."""
    at = argv.index(option)
    start = at - 2 if argv[at - 2] == "--perms" else at
    return argv[:start] + argv[at + 1 + values :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--job", choices=("true", "python"), default="true")
    args = ap.parse_args()
    print(machine_line())
    if unavailable():
        sys.exit(f"no sandbox here: {unavailable()}")
    status_fd = os.open(os.devnull, os.O_WRONLY)
    built = variants(status_fd)
    python_job = [sys.executable, "-c", "pass"]
    job = python_job if args.job == "python" else ["/bin/true"]
    full = built["sandbox"][: -len(python_job)] + job
    full = without(full, "--json-status-fd", 1)  # the loop has no descriptor 3
    bare_setpriv_at = full.index("--")
    runs: dict[str, list[str]] = {
        "the job bare": job,
        "the sandbox": full,
        "without setpriv": [*full[: bare_setpriv_at + 1], *job],
        "without --dev": without(full, "--dev", 1),
        "without --proc": without(full, "--proc", 1),
        "without the two tmpfs": without(without(full, "--tmpfs", 1), "--tmpfs", 1),
        "without --unshare-pid": without(full, "--unshare-pid", 0),
        "without --unshare-ipc": without(full, "--unshare-ipc", 0),
        "without --unshare-cgroup-try": without(full, "--unshare-cgroup-try", 0),
        "without --unshare-uts": without(full, "--unshare-uts", 0),
    }
    system = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("/bin", "/sbin", "/lib", "/lib64"):
        if Path(name).is_symlink():
            system += ["--symlink", os.readlink(name), name]
    if args.job == "true":
        runs["bwrap with /usr and /etc only"] = [full[0], *system, *job]
    group, usage = cpu_meter()
    try:
        per_run: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, argv in runs.items():
                loop = (
                    f"echo $$ > {group}/cgroup.procs; i=0; while [ $i -lt {args.runs} ]; "
                    f"do {shlex.join(argv)} >/dev/null || exit 9; i=$((i+1)); done"
                )
                before = usage()
                subprocess.run(["/bin/sh", "-c", loop], check=True)
                per_run[name].append((usage() - before) / args.runs / 1e6)
    finally:
        remove(group)
    print(f"job: {shlex.join(job)}; {args.runs} runs × {args.rounds} rounds, median of rounds")
    whole = statistics.median(per_run["the sandbox"])
    for name, values in per_run.items():
        mid = statistics.median(values)
        low, high = min(values), max(values)
        delta = "" if name == "the sandbox" else f"  ({mid - whole:+.2f} against the sandbox)"
        print(f"{name:32} {mid:6.2f} ms CPU per run ({low:.2f}–{high:.2f}){delta}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
