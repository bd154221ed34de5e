"""W3's slow submits, one by one: where the tail comes from (issue 9, p99 <= 1.5 ms).

The server's application in-process (as ``submit_app_cpu.py``: SQLite in a fresh data
dir under ``TMPDIR``, no dispatcher, the commit in the loop's thread as in ``jobyard
serve``), submits one after the other as W3 sends them. For each submit: its wall time
and the loop thread's CPU time, and what happened during it: a WAL checkpoint (SQLite's
``nBackfill`` counter in the ``-shm`` file grew: frames were copied back), a garbage
collection (``gc.callbacks``), and the ``COMMIT`` statement's own wall and CPU time
(the WAL's fsync). Then the distribution and what the slowest 1 % and 0.1 % had in
common. Wall times move with the machine's load; the thread CPU figures much less.

    .venv/bin/python bench/w3_tail.py [--submits 5000] [--rounds 1]

The ``-shm`` layout read here is SQLite's documented WAL-index format
(https://www.sqlite.org/walformat.html): ``mxFrame`` at byte 16, ``nBackfill`` at 96.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import mmap
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import in_process_app, machine_line, percentile
from submit_app_cpu import WARMUP, _submitter

import jobyard.store.database as database_module


@dataclass
class Sample:
    wall_us: float
    cpu_us: float
    checkpoint: bool
    gc_us: float
    commit_wall_us: float
    commit_cpu_us: float
    frames: int
    handed: bool  #: the loop found the write lock taken: the writer thread committed


class Commits:
    """Times the ``COMMIT`` statements of the loop's driver transactions."""

    def __init__(self) -> None:
        self.wall_ns = 0
        self.cpu_ns = 0

    @contextmanager
    def patched(self) -> Iterator[None]:
        original = database_module._driver_statement

        def timed(conn: Any, sql: str) -> None:
            if sql != "COMMIT":
                original(conn, sql)
                return
            w, c = time.perf_counter_ns(), time.thread_time_ns()
            try:
                original(conn, sql)
            finally:
                self.cpu_ns += time.thread_time_ns() - c
                self.wall_ns += time.perf_counter_ns() - w

        database_module._driver_statement = timed
        try:
            yield
        finally:
            database_module._driver_statement = original


class HandOffs:
    """Counts the loop's turns committed by the writer thread (the write lock taken)."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def patched(self) -> Iterator[None]:
        cls = database_module.Database
        original = cls._group_write_now

        def counted(db: Any) -> Any:
            begin = original(db)
            if begin is None:
                self.count += 1
            return begin

        cls._group_write_now = counted  # type: ignore[method-assign]
        try:
            yield
        finally:
            cls._group_write_now = original  # type: ignore[method-assign]


class Collections:
    """The garbage collector's time, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.ns = 0
        self._start = 0
        self.by_generation: dict[int, list[float]] = {}  #: µs of each collection

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            took = time.perf_counter_ns() - self._start
            self.ns += took
            self.by_generation.setdefault(info["generation"], []).append(took / 1e3)


def _shm(db: Path) -> mmap.mmap:
    with open(f"{db}-shm", "rb") as f:
        return mmap.mmap(f.fileno(), 136, access=mmap.ACCESS_READ)


def _wal_state(shm: mmap.mmap) -> tuple[int, int]:
    """(mxFrame, nBackfill) of the WAL-index."""
    return struct.unpack_from("=I", shm, 16)[0], struct.unpack_from("=I", shm, 96)[0]


async def _measure(submit: Any, shm: mmap.mmap, submits: int, gap_s: float) -> list[Sample]:
    commits, collections, hand_offs = Commits(), Collections(), HandOffs()
    gc.callbacks.append(collections)
    out: list[Sample] = []
    try:
        with commits.patched(), hand_offs.patched():
            for _ in range(submits):
                if gap_s:
                    time.sleep(gap_s)  # the client's share of a round trip: the loop idles
                before = _wal_state(shm)
                c0, g0, h0 = commits.wall_ns, collections.ns, hand_offs.count
                cc0 = commits.cpu_ns
                w, c = time.perf_counter_ns(), time.thread_time_ns()
                await submit()
                cpu = time.thread_time_ns() - c
                wall = time.perf_counter_ns() - w
                after = _wal_state(shm)
                out.append(
                    Sample(
                        wall / 1e3,
                        cpu / 1e3,
                        after[1] > before[1],
                        (collections.ns - g0) / 1e3,
                        (commits.wall_ns - c0) / 1e3,
                        (commits.cpu_ns - cc0) / 1e3,
                        after[0],
                        hand_offs.count > h0,
                    )
                )
    finally:
        gc.callbacks.remove(collections)
    for generation, took in sorted(collections.by_generation.items()):
        print(
            f"generation {generation} collections: {len(took)}, "
            f"median {percentile(took, 50):,.0f} us, max {max(took):,.0f} us"
        )
    return out


def _dist(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):,.0f}, p90 {percentile(values, 90):,.0f}, "
        f"p99 {percentile(values, 99):,.0f}, p99.9 {percentile(values, 99.9):,.0f}, "
        f"max {max(values):,.0f}"
    )


def _causes(slow: list[Sample], commit_p99_us: float) -> str:
    ckpt = sum(s.checkpoint for s in slow)
    gcs = sum(s.gc_us > 0 for s in slow)
    fsync = sum(s.commit_wall_us > commit_p99_us and not s.checkpoint for s in slow)
    handed = sum(s.handed for s in slow)
    return (
        f"{len(slow)} submits: {ckpt} with a checkpoint, {gcs} with a collection, "
        f"{fsync} with a slow commit (> the commits' p99, no checkpoint), "
        f"{handed} committed by the writer thread"
    )


def report(samples: list[Sample]) -> None:
    n = len(samples)
    print(f"wall us:          {_dist([s.wall_us for s in samples])}")
    print(f"loop CPU us:      {_dist([s.cpu_us for s in samples])}")
    print(f"COMMIT wall us:   {_dist([s.commit_wall_us for s in samples])}")
    print(f"COMMIT CPU us:    {_dist([s.commit_cpu_us for s in samples])}")
    ck = [s for s in samples if s.checkpoint]
    plain = [s for s in samples if not s.checkpoint]
    print(
        f"checkpoints seen in {len(ck)} of {n} submits ({100 * len(ck) / n:.2f} %); "
        f"WAL frames at most {max(s.frames for s in samples):,}, at the end {samples[-1].frames:,}"
    )
    for name, group in (("with a checkpoint", ck), ("without", plain)):
        if group:
            print(
                f"  {name}: wall p50 {percentile([s.wall_us for s in group], 50):,.0f} us, "
                f"loop CPU p50 {percentile([s.cpu_us for s in group], 50):,.0f} us, "
                f"COMMIT wall p50 {percentile([s.commit_wall_us for s in group], 50):,.0f} us"
            )
    gcs = [s for s in samples if s.gc_us > 0]
    print(
        f"collections in {len(gcs)} submits, "
        f"{sum(s.gc_us for s in gcs):,.0f} us in all"
        + (f", at most {max(s.gc_us for s in gcs):,.0f} us" if gcs else "")
    )
    handed = [s for s in samples if s.handed]
    print(
        f"committed by the writer thread (the write lock taken): {len(handed)} submits"
        + (f", wall p50 {percentile([s.wall_us for s in handed], 50):,.0f} us" if handed else "")
    )
    commit_p99 = percentile([s.commit_wall_us for s in plain or samples], 99)
    for pct in (1.0, 0.1):
        k = max(1, int(n * pct / 100))
        by_wall = sorted(samples, key=lambda s: s.wall_us)[-k:]
        by_cpu = sorted(samples, key=lambda s: s.cpu_us)[-k:]
        print(f"slowest {pct} % by wall: {_causes(by_wall, commit_p99)}")
        print(f"slowest {pct} % by loop CPU: {_causes(by_cpu, commit_p99)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--gap-us",
        type=float,
        default=300.0,
        help="idle time before each submit (the client's part of W3's round trip; 0: none)",
    )
    args = parser.parse_args()
    print(machine_line())
    with in_process_app() as (app, key):
        submit = _submitter(app, f"Bearer {key}".encode())
        for n in range(1, args.rounds + 1):
            warmup = WARMUP if n == 1 else 0
            print(f"round {n}: {args.submits} submits after {warmup}, {args.gap_us:.0f} us apart")
            report(asyncio.run(_round(submit, warmup, args.submits, args.gap_us / 1e6)))


async def _round(submit: Any, warmup: int, submits: int, gap_s: float) -> list[Sample]:
    for _ in range(warmup):
        await submit()
    gc.freeze()  # as ``jobyard serve`` does after start-up
    db = next(Path(_home()).glob("**/*.db"))
    cpu = time.process_time()
    samples = await _measure(submit, _shm(db), submits, gap_s)
    process_us = (time.process_time() - cpu) / submits * 1e6
    print(f"process CPU per submit (all threads): {process_us:,.0f} us")
    return samples


def _home() -> str:
    import os
    import tempfile

    newest = max(Path(tempfile.gettempdir()).glob("jobyard-bench-*"), key=os.path.getmtime)
    return str(newest)


if __name__ == "__main__":
    main()
