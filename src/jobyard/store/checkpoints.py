"""SQLite's WAL checkpoints off the submit's commit.

SQLite copies the WAL back into the database file (a checkpoint, with the file's fsync)
inside the commit that takes the WAL over ``wal_autocheckpoint`` pages: one submit in
≈ 80 paid for it, ≈ 1 ms of CPU and an fsync, and those were W3's p99. The group-commit
connection (every submit's) runs with ``wal_autocheckpoint=0``, counts the rows its
commits changed (``total_changes``, a counter of the driver: no statement) and, every
:data:`ROWS_PER_CHECKPOINT`, wakes a thread of its own that runs a ``PASSIVE``
checkpoint on its own connection: writers go on meanwhile, readers are never waited for.
The other connections keep SQLite's automatic checkpoints.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("jobyard.store")

#: rows changed by the group's commits between two checkpoints: a submit changes ≈ 4
#: (job, event, the counts' row, …) and writes ≈ 12 pages, so ≈ 1,500 pages of WAL
ROWS_PER_CHECKPOINT = 500


class Checkpointer:
    """A thread that checkpoints ``engine``'s WAL when :meth:`changed` says enough rows
    were written since the last time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._seen: dict[int, int] = {}  #: a connection's id → its total_changes then
        self.checkpoints = 0  #: PASSIVE checkpoints run (for tests and metrics)

    def hand_over(self, conn: sa.Connection) -> None:
        """``conn`` stops checkpointing in its commits; this thread does it for it."""
        driver: Any = conn.connection.driver_connection
        driver.execute("PRAGMA wal_autocheckpoint=0")  # no transaction begun for it

    def changed(self, conn: sa.Connection) -> None:
        """After a commit on a handed-over ``conn``: wake the thread when due."""
        driver: Any = conn.connection.driver_connection
        total: int = driver.total_changes
        last = self._seen.setdefault(id(driver), total)
        if total - last < ROWS_PER_CHECKPOINT:
            return
        self._seen[id(driver)] = total
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(
                    target=self._run, name="jobyard-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        with self._engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                try:
                    driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except Exception:  # the next commit wakes it again
                    log.warning("a WAL checkpoint failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._stop = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
