"""Small pieces of a job's way through the node, each alone, in thread CPU per call:
an empty SQLite write transaction (``Database.write``, unsynced: no fsync) and read
transaction (``Database.read``), the spare job directory made and taken
(``Workspace.make_spare``, ``take_spare``) and ``parameters.json`` written
(``Workspace.write_parameters``) in a fresh data directory. For A/B of two commits
(``PYTHONPATH=<export>/src:<export>/bench``); the files go to ``TMPDIR`` (see the
inode line: a dear new inode inflates the file figures).

    .venv/bin/python bench/node_pieces.py [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import inode_line, load_average, machine_line, spread

from jobyard.storage.workspace import Workspace
from jobyard.store.database import Database


def per_call_us(calls: int, step: Callable[[int], object]) -> float:
    start = time.thread_time_ns()
    for i in range(calls):
        step(i)
    return (time.thread_time_ns() - start) / calls / 1000


def transactions(calls: int) -> tuple[float, float]:
    """Thread CPU µs of an empty write and an empty read transaction."""
    where = Path(tempfile.mkdtemp(prefix="jobyard-pieces-"))
    db = Database(f"sqlite:///{where}/pieces.db")
    try:
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER)")

        def write(_: int) -> None:
            with db.write(synced=False):
                pass

        def read(_: int) -> None:
            with db.read():
                pass

        return per_call_us(calls * 10, write), per_call_us(calls * 10, read)
    finally:
        db.dispose()
        shutil.rmtree(where)


def files(calls: int) -> tuple[float, float, float]:
    """Thread CPU µs of make_spare, take_spare and write_parameters."""
    where = Path(tempfile.mkdtemp(prefix="jobyard-pieces-"))
    try:
        ws = Workspace(where)
        ws.make_spare()  # the first one makes jobs/ too
        ws.take_spare("first")
        made = taken = 0
        for i in range(calls):
            t0 = time.thread_time_ns()
            ws.make_spare()
            t1 = time.thread_time_ns()
            ws.take_spare(f"job-{i}")
            made += t1 - t0
            taken += time.thread_time_ns() - t1
        params = per_call_us(calls, lambda i: ws.write_parameters(f"job-{i}", {}))
        return made / calls / 1000, taken / calls / 1000, params
    finally:
        shutil.rmtree(where)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(machine_line())
    print(inode_line())
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        w, r = transactions(args.calls)
        made, taken, params = files(args.calls)
        for name, value in (
            ("empty write transaction (unsynced)", w),
            ("empty read transaction", r),
            ("make_spare", made),
            ("take_spare", taken),
            ("write_parameters", params),
        ):
            rows.setdefault(name, []).append(value)
    for name, values in rows.items():
        print(f"{name:36s} {spread(values).fmt(1)} µs")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
