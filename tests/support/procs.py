"""Host processes of a job, for tests that check what a cancel or a restart kills.

In a sandbox the job's own ``os.getpid()`` is a pid of its PID namespace; the host
pids come from the process jobyard started (the job's ``pid``) and its descendants.
"""

from __future__ import annotations

import os
import re
from typing import Any

import psutil
import pytest


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it."""
    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def gone(pids: list[int]) -> bool:
    """Every process has exited (a zombie not reaped yet counts as gone)."""

    def dead(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(dead(p) for p in pids)


def spy_reads(monkeypatch: pytest.MonkeyPatch, made: list[int] | None = None) -> list[int]:
    """The pids whose ``/proc/<pid>/stat`` is read from now on, by ``os.open`` or through
    a new ``psutil.Process`` (which reads it when made), in the order of the reads; the
    pids of the ``psutil.Process`` objects made also go to ``made``."""
    read: list[int] = []
    objects: list[int] = [] if made is None else made
    real_open, real_process = os.open, psutil.Process

    def opening(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        found = re.fullmatch(r"/proc/(\d+)/stat", os.fsdecode(path))
        if found:
            read.append(int(found[1]))
        return real_open(path, flags, *args, **kw)

    class Process(real_process):  # type: ignore[misc,valid-type]
        def __init__(self, pid: int | None = None) -> None:
            read.append(os.getpid() if pid is None else pid)
            objects.append(read[-1])
            super().__init__(pid)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(psutil, "Process", Process)
    return read
