"""Where W1's server CPU goes: one W1 round (200 ``python -c pass`` jobs submitted one by
one through the SDK to ``--slots 2``), with the server's CPU and context switches per
thread, split into the submit phase and the run phase (until every job ended).

    .venv/bin/python bench/w1_threads.py [--jobs 200] [--poll-ms 100]

Per-thread figures come from ``/proc/<pid>/task/*/{stat,status}`` (user and system CPU
in 10 ms clock ticks, so a thread that used little shows 0 or 10 ms) and ``schedstat``
(its time on a CPU in ns: the ``µs/job`` column, both phases together); thread names
from ``py-spy dump`` when py-spy is beside this interpreter (Python 3.11 does not name its
OS threads). The run phase includes the completion polls (``GET
/v1/jobs?status=…&limit=1`` every ``--poll-ms``), served by the event loop and the AnyIO
worker thread.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
from common import inode_line, load_average, machine_line, running_server
from w1_throughput import job_path, wait_all_ended

import jobyard

#: tid -> (user ticks, system ticks, switches, ns on a CPU)
Counters = dict[str, tuple[int, int, int, int]]


def snapshot(pid: int) -> Counters:
    """CPU ticks and context switches of each thread of ``pid`` now."""
    found: Counters = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
            on_cpu = int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        switches = sum(
            int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line
        )
        found[task.name] = (int(fields[11]), int(fields[12]), switches, on_cpu)
    return found


def thread_names(pid: int) -> dict[str, str]:
    """tid -> Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {}
    out = subprocess.run(
        [str(spy), "dump", "-p", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    return {m[1]: m[2] for m in re.finditer(r'Thread (\d+) \(\S+\): "([^"]*)"', out)}


def delta(before: Counters, after: Counters) -> Counters:
    zero = (0, 0, 0, 0)
    return {
        t: tuple(a - b for a, b in zip(v, before.get(t, zero), strict=True))  # type: ignore[misc]
        for t, v in after.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--poll-ms", type=float, default=100, help="completion poll interval")
    args = ap.parse_args()
    python = os.path.abspath(sys.executable)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    print(machine_line())
    print(inode_line())
    with (
        running_server(slots=2, extra_env={"PATH": job_path(python)}) as server,
        server.client() as c,
        jobyard.Client(server.url, server.api_key) as sdk,
    ):
        sdk.list(limit=1)  # connect + auth warm
        proc = psutil.Process(server.pid)
        s0, t0 = snapshot(proc.pid), time.perf_counter()
        for _ in range(args.jobs):
            sdk.submit([python, "-c", "pass"])
        s1, t1 = snapshot(proc.pid), time.perf_counter()
        names = thread_names(proc.pid)
        s1b = snapshot(proc.pid)
        wait_all_ended(c, args.jobs, args.poll_ms / 1000)
        s2, t2 = snapshot(proc.pid), time.perf_counter()
        names.update(thread_names(proc.pid))
    submit, run = delta(s0, s1), delta(s1b, s2)
    print(f"submit phase {t1 - t0:.2f} s, run phase {t2 - t1:.2f} s")
    print(f"{'thread':26s} {'submit: user/sys ms':>20s} {'switches':>9s}   "
          f"{'run: user/sys ms':>17s} {'switches':>9s} {'µs/job':>7s}")  # fmt: skip
    zero = (0, 0, 0, 0)
    totals = [0.0, 0.0, 0, 0]
    for tid in sorted(set(submit) | set(run), key=lambda t: -sum(run.get(t, zero)[:2])):
        a, b = submit.get(tid, zero), run.get(tid, zero)
        if not any(a) and not any(b):
            continue
        totals[0] += (a[0] + a[1]) * tick_ms
        totals[1] += (b[0] + b[1]) * tick_ms
        totals[2] += a[2] + b[2]
        totals[3] += a[3] + b[3]
        print(
            f"{names.get(tid, tid):26s} {a[0] * tick_ms:9.0f}/{a[1] * tick_ms:<10.0f} {a[2]:9d}   "
            f"{b[0] * tick_ms:7.0f}/{b[1] * tick_ms:<9.0f} {b[2]:9d} "
            f"{(a[3] + b[3]) / 1000 / args.jobs:7.0f}"
        )
    per_job = (totals[0] + totals[1]) / args.jobs
    print(
        f"server CPU: submit phase {totals[0]:.0f} ms, run phase {totals[1]:.0f} ms, "
        f"{per_job:.2f} ms per job ({totals[3] / 1e6 / args.jobs:.2f} by schedstat); "
        f"{totals[2] / args.jobs:.1f} context switches per job"
    )
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
