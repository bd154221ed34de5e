"""Host processes of a job, for tests that check what a cancel or a restart kills.

In a sandbox the job's own ``os.getpid()`` is a pid of its PID namespace; the host
pids come from the process jobyard started (the job's ``pid``) and its descendants.
"""

from __future__ import annotations

import psutil


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
