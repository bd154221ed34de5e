"""Idle memory: RSS, PSS and USS of ``jobyard serve`` and all its children, in MB.

Starts a server on SQLite in a fresh data dir, waits until it is healthy, lets it idle,
then reads psutil's ``memory_full_info()``. Target: <= 100 MB RSS in total.

    .venv/bin/python bench/idle_rss.py [--idle-s 5] [--slots 2]
"""

from __future__ import annotations

import argparse
import time

import psutil
from common import machine_line, running_server

MB = 1024 * 1024


def row(proc: psutil.Process) -> tuple[str, float, float | None, float | None]:
    """(label, rss, pss, uss) in MB; pss/uss are None where the platform lacks them."""
    with proc.oneshot():
        label = f"{proc.pid} {proc.name()}"
        try:
            full = proc.memory_full_info()
            pss = getattr(full, "pss", None)
            uss = getattr(full, "uss", None)
            return (
                label,
                full.rss / MB,
                pss / MB if pss is not None else None,
                uss / MB if uss is not None else None,
            )
        except psutil.AccessDenied:
            return label, proc.memory_info().rss / MB, None, None


def fmt(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else "       –"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle time before measuring")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()
    print(machine_line())
    with running_server(slots=args.slots) as server:
        time.sleep(args.idle_s)
        root = psutil.Process(server.pid)
        rows = [row(p) for p in [root, *root.children(recursive=True)]]
    print(f"after {args.idle_s:g} s idle ({args.slots} slots, SQLite):")
    print(f"{'process':<28}{'RSS MB':>8}{'PSS MB':>8}{'USS MB':>8}")
    for label, rss, pss, uss in rows:
        print(f"{label:<28}{rss:8.1f}{fmt(pss)}{fmt(uss)}")
    pss_all = [r[2] for r in rows]
    uss_all = [r[3] for r in rows]
    total_pss = sum(p for p in pss_all if p is not None) if None not in pss_all else None
    total_uss = sum(u for u in uss_all if u is not None) if None not in uss_all else None
    total_rss = sum(r[1] for r in rows)
    print(f"{'total':<28}{total_rss:8.1f}{fmt(total_pss)}{fmt(total_uss)}  (target <= 100 RSS)")


if __name__ == "__main__":
    main()
