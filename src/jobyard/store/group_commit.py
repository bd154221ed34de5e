"""Group commit: one writer thread runs the write work that is waiting at that moment
in one transaction, so concurrent submits share one commit (one fsync) and a lone
submit pays exactly one.

Each piece of work is a function of the open connection. With several pieces in a
transaction each runs inside its own savepoint, so one that fails (an idempotency
conflict, a bad value) is rolled back alone and the others still commit. A result is
handed back only after the commit: an answer never precedes durability.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import sqlalchemy as sa

log = logging.getLogger("jobyard.store")

T = TypeVar("T")
Work = Callable[[sa.Connection], Any]
#: the most pieces of work committed together
MAX_GROUP = 1000

_STOP = object()


class GroupCommit:
    """A writer thread over ``begin_write`` (a context manager yielding a connection
    inside a write transaction that commits on exit)."""

    def __init__(self, begin_write: Callable[[], AbstractContextManager[sa.Connection]]) -> None:
        self._begin_write = begin_write
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.transactions = 0  #: transactions committed (for metrics and tests)
        self.pieces = 0  #: pieces of work committed in them

    def waiting(self) -> int:
        """Pieces of work queued and not yet taken by the writer."""
        return self._queue.qsize()

    def submit(self, work: Callable[[sa.Connection], T]) -> Future[T]:
        """Queue ``work``; its future resolves once the transaction holding it committed."""
        if self._thread is None:
            self._start()
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        """Queue ``work`` and wait for its committed result (or its exception)."""
        return self.submit(work).result()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="jobyard-writer", daemon=True)
                thread.start()
                self._thread = thread

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[tuple[Work, Future[Any]]]) -> None:
        live = [(w, f) for w, f in group if f.set_running_or_notify_cancel()]
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._begin_write() as conn:
                if len(live) == 1:
                    outcomes.append((True, live[0][0](conn)))
                else:
                    for work, _ in live:
                        outcomes.append(_in_savepoint(conn, work))
        except BaseException as e:  # the transaction failed: every piece fails with it
            for _, future in live:
                future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        self.transactions += 1
        self.pieces += sum(ok for ok, _ in outcomes)
        for (_, future), (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _in_savepoint(conn: sa.Connection, work: Work) -> tuple[bool, Any]:
    try:
        with conn.begin_nested():
            return True, work(conn)
    except Exception as e:  # this piece alone is rolled back
        return False, e
