"""Group commit: one writer thread runs the write work that is waiting at that moment
in one transaction, so concurrent submits share one commit (one fsync) and a lone
submit pays exactly one.

Each piece of work is a function of the open connection. Several pieces share one
transaction; when one of them fails it (an idempotency conflict, a bad value), the group
is rolled back and each piece runs again in a transaction of its own, so the failing one
fails alone and the others still commit. A result is handed back only after the
commit: an answer never precedes durability.

From the event loop (:meth:`GroupCommit.run_async`) the pieces submitted in one turn of
the loop are committed together, in the loop's own thread when the database can take
the transaction at once (``try_begin_write``: SQLite with its write lock free), which
saves two thread hand-offs per submit; otherwise the writer thread commits them.

A piece that is one statement (``one_statement``) and is alone in its group is run on
``begin_statement``'s connection when there is one (PostgreSQL's autocommit): the
statement commits itself, in one round trip instead of three.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
Work = Callable[[sa.Connection], Any]
#: the most pieces of work committed together
MAX_GROUP = 1000

_STOP = object()


class GroupCommit:
    """A writer thread over ``begin_write`` (a context manager yielding a connection
    inside a write transaction that commits on exit)."""

    def __init__(
        self,
        begin_write: Callable[[], AbstractContextManager[sa.Connection]],
        try_begin_write: Callable[[], AbstractContextManager[sa.Connection] | None] | None = None,
        begin_statement: Callable[[], AbstractContextManager[sa.Connection]] | None = None,
    ) -> None:
        self._begin_write = begin_write
        self._try_begin_write = try_begin_write
        self._begin_statement = begin_statement
        self._turn: list[tuple[Work, asyncio.Future[Any]]] = []  #: this loop turn's pieces
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.transactions = 0  #: transactions committed (for metrics and tests)
        self.pieces = 0  #: pieces of work committed in them

    def waiting(self) -> int:
        """Pieces of work queued and not yet taken by the writer."""
        return self._queue.qsize()

    def submit(
        self, work: Callable[[sa.Connection], T], *, one_statement: bool = False
    ) -> Future[T]:
        """Queue ``work``; its future resolves once the transaction holding it committed.
        ``one_statement``: ``work`` runs exactly one statement (atomic by itself)."""
        if self._thread is None:
            self._start()
        future: Future[T] = Future()
        self._queue.put((work, future, one_statement))
        return future

    def run(self, work: Callable[[sa.Connection], T], *, one_statement: bool = False) -> T:
        """Queue ``work`` and wait for its committed result (or its exception)."""
        return self.submit(work, one_statement=one_statement).result()

    async def run_async(self, work: Callable[[sa.Connection], T]) -> T:
        """:meth:`run` for the event loop: committed with the pieces of the same turn of
        the loop, without a thread when the database is free at once. One event loop
        per process uses it (the server's)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._turn.append((work, future))
        if len(self._turn) == 1:  # the first of this turn: flush after the others
            loop.call_soon(self._flush_turn)
        return await future

    def _flush_turn(self) -> None:
        group, self._turn = self._turn, []
        begin = self._try_begin_write() if self._try_begin_write is not None else None
        if begin is None:  # the database is busy (or remote): the writer thread commits
            for work, future in group:
                _chain(self.submit(work), future)
            return
        live = [(w, f) for w, f in group if not f.cancelled()]
        _settle(live, self._transaction(begin, [w for w, _ in live]))

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

    def _commit(self, group: list[tuple[Work, Future[Any], bool]]) -> None:
        live = [(w, f, one) for w, f, one in group if f.set_running_or_notify_cancel()]
        statement = self._begin_statement
        alone = statement is not None and len(live) == 1 and live[0][2]
        begin = statement() if statement is not None and alone else self._begin_write()
        _settle([(w, f) for w, f, _ in live], self._transaction(begin, [w for w, _, _ in live]))

    def _transaction(
        self, begin: AbstractContextManager[sa.Connection], works: list[Work]
    ) -> list[tuple[bool, Any]] | BaseException:
        """Each piece's (ok, result or exception) once committed, or the exception that
        failed the transaction of a lone piece. A group is tried as one transaction; if
        any piece fails it, each piece is run again in a transaction of its own, so the
        others still commit (cheaper than a savepoint per piece in the common case)."""
        try:
            with begin as conn:
                results = [work(conn) for work in works]
        except Exception as e:
            if len(works) == 1:
                return e
            return [self._alone(work) for work in works]
        self.transactions += 1
        self.pieces += len(works)
        return [(True, r) for r in results]

    def _alone(self, work: Work) -> tuple[bool, Any]:
        """``work`` in a transaction of its own: (ok, result or exception)."""
        try:
            with self._begin_write() as conn:
                result = work(conn)
        except Exception as e:
            return False, e
        self.transactions += 1
        self.pieces += 1
        return True, result


def _settle(live: list[tuple[Work, Any]], outcomes: list[tuple[bool, Any]] | BaseException) -> None:
    """Resolve each piece's future (concurrent or asyncio) with its outcome."""
    for i, (_, future) in enumerate(live):
        if isinstance(outcomes, BaseException):
            future.set_exception(outcomes)
        elif outcomes[i][0]:
            future.set_result(outcomes[i][1])
        else:
            future.set_exception(outcomes[i][1])


def _chain(source: Future[Any], target: asyncio.Future[Any]) -> None:
    """Resolve ``target`` (of the running loop) with ``source``'s outcome."""
    loop = target.get_loop()

    def copy(done: Future[Any]) -> None:
        def settle() -> None:
            if target.cancelled():
                return
            error = done.exception()
            if error is not None:
                target.set_exception(error)
            else:
                target.set_result(done.result())

        loop.call_soon_threadsafe(settle)

    source.add_done_callback(copy)
