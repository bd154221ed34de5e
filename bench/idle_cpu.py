"""What an idle ``jobyard serve`` costs: CPU per second of each server thread, from
``/proc/<pid>/task/*/schedstat`` (nanoseconds on the CPU), over ``--seconds`` after a
``--settle-s`` wait once the server is healthy. No request is sent meanwhile. With
``--database-url`` the server uses a fresh PostgreSQL database (as ``w3_submit.py``).

    .venv/bin/python bench/idle_cpu.py [--seconds 20] [--settle-s 3] [--slots 2]
        [--sleeping-jobs N] [--database-url URL]

``--sleeping-jobs N``: a lightly loaded server instead, N jobs of ``sleep 3600`` running
(submitted and seen ``running`` before the settle wait).

Thread names come from ``py-spy dump`` when py-spy is beside this interpreter.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import Server, load_average, machine_line, running_server
from w1_threads import thread_names
from w3_submit import fresh_database


def cpu_ns(pid: int) -> dict[str, int]:
    """tid -> nanoseconds the thread has run so far."""
    found: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[task.name] = int((task / "schedstat").read_text().split()[0])
        except OSError:  # the thread ended meanwhile
            continue
    return found


def start_sleepers(server: Server, jobs: int) -> None:
    """Submit ``jobs`` jobs of ``sleep 3600`` and wait until all run."""
    with server.client() as c:
        ids = [
            c.post("/v1/jobs", json={"entrypoint": "sleep 3600"}).json()["id"] for _ in range(jobs)
        ]
        while any(c.get(f"/v1/jobs/{i}").json()["status"] != "running" for i in ids):
            time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle-s", type=float, default=3.0)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--sleeping-jobs", type=int, default=0)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    print(machine_line())
    with (
        fresh_database(args.database_url) as url,
        running_server(slots=args.slots, database_url=url) as server,
    ):
        if args.sleeping_jobs:
            start_sleepers(server, args.sleeping_jobs)
        time.sleep(args.settle_s)
        names = thread_names(server.pid)
        before, t0 = cpu_ns(server.pid), time.perf_counter()
        time.sleep(args.seconds)
        after, t1 = cpu_ns(server.pid), time.perf_counter()
        names.update(thread_names(server.pid))
    wall = t1 - t0
    rows = sorted(
        ((names.get(t, t), (ns - before.get(t, 0)) / 1e6 / wall) for t, ns in after.items()),
        key=lambda r: -r[1],
    )
    print(f"idle for {wall:.1f} s; server CPU in ms per second of wall time:")
    for name, ms in rows:
        print(f"  {name:28s} {ms:6.2f}")
    print(f"  {'all':28s} {sum(ms for _, ms in rows):6.2f}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
