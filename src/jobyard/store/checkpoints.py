"""SQLite's WAL checkpoints beside the writers instead of inside their commits.

By default SQLite copies the WAL back into the database file (and fsyncs that file) in
the commit that takes the WAL past 1,000 pages: with ≈ 13 pages a submit, every ≈ 77th
submit paid ≈ 1 ms more of CPU and a second fsync before its answer, W3's p99.

Here the server's connections leave that to a thread of their own: after each commit of
this process, :meth:`Checkpointer.committed` reads the WAL's length from SQLite's
WAL-index in shared memory (the ``-shm`` file, format documented at
https://www.sqlite.org/walformat.html: ``mxFrame`` at byte 16, ``nBackfill`` at 96; one
read of mapped memory, no system call) and wakes the thread when ``CHECKPOINT_FRAMES``
frames are written and not yet copied back. The thread runs ``PRAGMA
wal_checkpoint(PASSIVE)`` on a connection of its own, again while writers appended
frames meanwhile (each round copies only those), until it finds the WAL copied back
whole: the next write transaction then starts the WAL over from its beginning, so the
WAL stays bounded. A passive checkpoint takes no lock that a writer waits for.

Crash safety is SQLite's: a checkpoint syncs the WAL before it copies frames back and
the database file before it counts them as copied; a commit is durable once its frames
are synced in the WAL, whether a checkpoint copied them yet or not.

If the thread falls behind (writers that never leave it a gap), SQLite's own
auto-checkpoint stays on as a backstop, at ``BACKSTOP_FRAMES``: the commit that takes
the WAL that far copies back what is left, as before, only much more rarely.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sqlite3
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: frames written and not yet copied back that wake the checkpoint thread (SQLite's
#: default auto-checkpoint length)
CHECKPOINT_FRAMES = 1000
#: the server's connections' own ``wal_autocheckpoint``: a checkpoint in the commit
#: that takes the WAL this long (≈ 64 MB of 4 kB pages), should the thread fall behind
BACKSTOP_FRAMES = 16000
#: checkpoint rounds after a wake-up at most (each copies what writers appended during
#: the one before)
ROUNDS = 8
#: the most frames the last round copies while the process's writers wait (≈ 1 MB)
LOCKED_FRAMES = 256
#: how long a later round waits for the process's write lock (the commit under way)
LOCK_WAIT_S = 0.05
#: WAL-index offsets (native byte order): the frames in the WAL, and those copied back
_MX_FRAME = struct.Struct("=I")
_MX_FRAME_AT = 16
_BACKFILL_AT = 96
_HEADER_BYTES = 136


class Checkpointer:
    """The WAL checkpoints of the SQLite database ``path``, on a thread started on first
    use; :meth:`committed` after each commit of this process."""

    def __init__(
        self,
        path: Path,
        lock: threading.RLock | None = None,
        frames: int = CHECKPOINT_FRAMES,
    ) -> None:
        self._path = path
        self._write_lock = lock
        self._frames = frames
        self._shm: mmap.mmap | None = None
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._closed = False
        self._failed = False
        #: checkpoints that found the WAL copied back whole (for tests and metrics)
        self.completed = 0

    def committed(self) -> None:
        """Called after a commit: wake the thread if the WAL is ``frames`` frames long
        and holds frames not copied back yet (≈ 0.3 µs when it does not)."""
        shm = self._shm
        if shm is None:
            shm = self._start()
            if shm is None:
                return
        try:
            mx = _MX_FRAME.unpack_from(shm, _MX_FRAME_AT)[0]
            if mx < self._frames or self._wake.is_set():
                return
            if mx > _MX_FRAME.unpack_from(shm, _BACKFILL_AT)[0]:  # frames to copy back
                self._idle.clear()
                self._wake.set()
        except ValueError:  # unmapped by close() meanwhile: the commit stands
            return

    def _start(self) -> mmap.mmap | None:
        """Open the thread's connection (which keeps the WAL-index mapped: SQLite
        resets the ``-shm`` file only when the first connection to it opens) and map
        the WAL-index; None once that failed (SQLite's backstop then checkpoints)."""
        with self._lock:
            if self._shm is not None or self._failed or self._closed:
                return self._shm
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")  # the database file synced too
                conn.execute("PRAGMA wal_autocheckpoint=0")  # its own reads never do
                with open(f"{self._path}-shm", "rb") as f:
                    if os.fstat(f.fileno()).st_size < _HEADER_BYTES:
                        raise OSError("the WAL-index is not initialised")
                    shm = mmap.mmap(f.fileno(), _HEADER_BYTES, access=mmap.ACCESS_READ)
            except (OSError, ValueError, sqlite3.Error) as e:
                log.warning("WAL checkpoints stay in the commits (%s)", e)
                self._failed = True
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                return None
            self._conn = conn
            thread = threading.Thread(target=self._run, name="jobyard-checkpoint", daemon=True)
            thread.start()
            self._thread = thread
            self._shm = shm
            return shm

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            self._wake.wait()
            if self._closed:
                return
            try:
                self._checkpoint(conn)
            except sqlite3.Error as e:  # the backstop keeps the WAL bounded meanwhile
                log.warning("WAL checkpoint failed: %s", e)
            finally:
                self._wake.clear()
                self._idle.set()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back so that the next write transaction starts it over.

        A first passive checkpoint copies what is there beside the writers. The WAL
        starts over only if no write transaction began before the copy was whole, so
        the last round runs under the process's write lock (its writers take it before
        they begin): at once if it is free and nothing was appended meanwhile, there is
        nothing left to do; else, once the commit under way ended, what was appended
        during the round before is copied (at most ``LOCKED_FRAMES`` frames and an fsync
        of the database file, while this process's writers wait; more, as after a large
        batch, are copied beside the writers in another round first)."""
        frames, copied = _passive(conn)
        lock = self._write_lock
        for _ in range(ROUNDS):
            if frames < 0:
                return  # another checkpoint runs (the backstop's); or not in WAL mode
            if lock is None:
                if copied >= frames:
                    self.completed += 1
                    return
            elif lock.acquire(blocking=False) or lock.acquire(timeout=LOCK_WAIT_S):
                try:
                    left = self._frames_now() - copied
                    if left <= LOCKED_FRAMES:
                        if left > 0:
                            frames, copied = _passive(conn)
                        if copied >= frames >= 0:
                            self.completed += 1
                        return
                finally:
                    lock.release()
            frames, copied = _passive(conn)

    def _frames_now(self) -> int:
        shm = self._shm
        assert shm is not None
        return int(_MX_FRAME.unpack_from(shm, _MX_FRAME_AT)[0])

    def wal_frames(self) -> int | None:
        """The frames in the WAL now (None before the first commit was seen)."""
        return None if self._shm is None else self._frames_now()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the thread has no checkpoint to run (False after ``timeout`` s)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the thread (what is not copied back yet stays in the WAL, as SQLite
        leaves it; the last connection to close copies it back)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(30)
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _passive(conn: sqlite3.Connection) -> tuple[int, int]:
    """A passive checkpoint: (frames in the WAL, frames copied back), or (-1, -1) when
    another checkpoint holds the WAL or the database is not in WAL mode."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return (-1, -1) if busy else (int(frames), int(copied))
