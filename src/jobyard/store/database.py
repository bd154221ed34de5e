"""The database handle: an engine plus short read and write transactions."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from jobyard import errors
from jobyard.store import dialects, tables
from jobyard.store.checkpoints import Checkpointer
from jobyard.store.group_commit import GroupCommit
from jobyard.store.prepared import driver_cursor

if TYPE_CHECKING:
    from jobyard.store.loop_statements import LoopStatements


#: the held connection of :meth:`Database.held_write`
_LOOP_SLOT = 2


class Database:
    """Owns the engine; every statement runs inside :meth:`read` or :meth:`write`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = dialects.make_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "postgresql":
            tables.complete_for_postgresql()
        # SQLite has one writer: threads of this process queue here instead of sleeping
        # in SQLite's busy handler (other processes still wait on BEGIN IMMEDIATE)
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        #: the writer thread that commits concurrent small writes together, on a
        #: connection of its own
        self.group = GroupCommit(
            self._group_write,
            self._group_write_now,
            self._group_statement if self.dialect == "postgresql" else None,
        )
        #: held connections: the group-commit thread's two (see :meth:`_held`) and the
        #: claim loop's (:meth:`held_write`)
        self._group_conns: list[sa.Connection | None] = [None, None, None]
        #: taken by the one caller on the claim loop's held connection at a time
        self._held_lock = threading.Lock()
        #: SQLite: whether each held connection commits with ``synchronous=FULL`` now
        self._full: dict[int, bool] = {}
        #: PostgreSQL: one-statement transactions from the event loop, on its own
        #: connection (no thread hand-off); None on SQLite
        self.loop_statements: LoopStatements | None = None
        if self.dialect == "postgresql":
            # imported here: a server on SQLite never loads psycopg
            from jobyard.store import loop_statements

            dialect = self.engine.dialect
            self.loop_statements = loop_statements.LoopStatements(
                loop_statements.connector(dialect, self.engine.url), dialect
            )
        self._ends_lock = threading.Lock()
        #: commits of this process that ended jobs so far (a hint for the notifier)
        self.ended_commits = 0
        #: the thread that syncs the SQLite WAL after an unsynced :meth:`write` (made on use)
        self._syncer: ThreadPoolExecutor | None = None
        self._syncer_lock = threading.Lock()
        #: SQLite: the WAL checkpoints, on a thread of their own instead of in a commit
        self.checkpoints: Checkpointer | None = None
        path = self.file_path
        if path is not None:
            self.checkpoints = Checkpointer(path, self._write_lock)

    def jobs_ended(self) -> None:
        """Count a commit that ended jobs: called after the commit."""
        with self._ends_lock:
            self.ended_commits += 1

    @property
    def file_path(self) -> Path | None:
        """The database file of a SQLite database, else None."""
        name = self.engine.url.database
        if self.dialect != "sqlite" or not name or name == ":memory:":
            return None
        return Path(name)

    @contextmanager
    def write(self, *, synced: bool = True) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success.

        ``synced=False``: the commit does not wait for the disk. On SQLite the
        transaction runs with ``synchronous=NORMAL`` (its WAL frames are written, not
        synced: a power failure may undo it, and with it nothing committed later, since
        every later synced commit syncs the WAL up to its own end); before anything acts
        on it outside the database, wait for :meth:`sync`. PostgreSQL: synced as always."""
        with contextlib.ExitStack() as stack:
            if self._write_lock is not None:
                stack.enter_context(self._write_lock)
            stack.enter_context(translate_errors())
            conn = stack.enter_context(self.engine.connect())
            if not synced and self._write_lock is not None:
                stack.enter_context(_unsynced(conn))
            conn = conn.execution_options(**{dialects.WRITE_OPTION: True})
            with conn.begin():
                yield conn
            self._committed()

    @contextmanager
    def held_write(self, *, synced: bool = True) -> Iterator[sa.Connection]:
        """:meth:`write` on a connection kept for the claim loop's steps (SQLite; a
        pooled one while another thread is in a transaction on it): no pool checkout,
        the driver's ``BEGIN IMMEDIATE`` and ``COMMIT`` (as :meth:`_group_write_now`),
        ``synchronous`` set only when it changes, and a page cache that stays valid while
        no other connection writes (a pooled connection's is dropped at each checkout
        that follows another's commit). A connection whose transaction failed is
        replaced at the next call. PostgreSQL: :meth:`write` (its pool pings a
        connection at checkout: one idle for long, or from before a restart of the
        server, is replaced without a failed step)."""
        held = self._held_lock
        lock = self._write_lock
        if lock is None or not held.acquire(blocking=False):
            with self.write(synced=synced) as conn:
                yield conn
            return
        try:
            lock.acquire()
            with self._driver_write_locked(lock, _LOOP_SLOT, synced) as conn:
                yield conn
        except BaseException:
            self._drop_conn(_LOOP_SLOT)  # its state is not known any more
            raise
        finally:
            held.release()

    def _committed(self) -> None:
        """After a commit (SQLite: still under the write lock): the WAL's checkpoint
        thread looks whether the WAL grew long."""
        if self.checkpoints is not None:
            self.checkpoints.committed()

    def _drop_conn(self, slot: int) -> None:
        """Close the held connection ``slot`` for good (the next use makes another)."""
        conn, self._group_conns[slot] = self._group_conns[slot], None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()

    def _synchronous(self, conn: sa.Connection, slot: int, full: bool) -> None:
        """SQLite's ``synchronous`` on the held connection ``slot``: ``FULL`` or
        ``NORMAL`` (see :meth:`write`), set outside a transaction when it changes."""
        if self._full.get(slot, True) is not full:  # a failure drops the connection
            _driver_statement(conn, f"PRAGMA synchronous={'FULL' if full else 'NORMAL'}")
            self._full[slot] = full

    def sync(self) -> Callable[[], None]:
        """Start syncing what a :meth:`write` with ``synced=False`` committed (the SQLite
        WAL, on a thread of its own, while the caller goes on); returns the wait for it,
        which raises StoreUnavailable if the sync failed. PostgreSQL: nothing to wait for."""
        path = self.file_path
        if path is None:
            return on_disk
        with self._syncer_lock:
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(1, thread_name_prefix="jobyard-walsync")
            done = self._syncer.submit(sync_wal, Path(f"{path}-wal"))
        return lambda: _synced(done)

    def _group_write(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """:meth:`write` on the group-commit thread's own connection (no pool checkout
        per transaction); a connection that broke is replaced on the next call."""
        return self._held(0)

    def _group_statement(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection of the group-commit thread on which each statement commits on
        its own (PostgreSQL's autocommit): a lone piece of one statement is committed
        with it, in one round trip instead of three (``BEGIN``, the statement, ``COMMIT``)."""
        return self._held(1)

    @contextmanager
    def _held(self, slot: int) -> Iterator[sa.Connection]:
        """The group-commit thread's connection ``slot`` (0: in a write transaction, 1:
        autocommit), under the write lock (SQLite) and the translation of driver errors."""
        with contextlib.ExitStack() as stack:
            if self._write_lock is not None:
                stack.enter_context(self._write_lock)
            stack.enter_context(translate_errors())
            conn = self._group_conn(slot)
            if slot == 1:
                yield conn
                return
            with conn.begin():
                yield conn
            self._committed()

    def _group_conn(self, slot: int) -> sa.Connection:
        """The held connection ``slot``, replaced if it broke."""
        conn = self._group_conns[slot]
        if conn is None or conn.invalidated:
            if conn is not None:
                conn.close()
            self._full.pop(slot, None)  # FULL, as dialects' on_connect sets it
            options: dict[str, Any] = {dialects.WRITE_OPTION: True}
            if slot == 1:
                options["isolation_level"] = "AUTOCOMMIT"
            conn = self._group_conns[slot] = self.engine.connect().execution_options(**options)
        return conn

    def _group_write_now(self) -> contextlib.AbstractContextManager[sa.Connection] | None:
        """:meth:`_group_write` for a caller that must not wait (the event loop): only on
        SQLite with its write lock free now (a PostgreSQL commit is a network round trip,
        which must not block the loop: a submit's goes through :attr:`loop_statements`,
        the rest stays on the writer thread). The transaction is the driver's own
        (``BEGIN IMMEDIATE`` and ``COMMIT`` on its connection: ≈ 5 µs against ≈ 24 µs
        through SQLAlchemy's) for work that runs its statements on the driver's cursor
        (``prepared.driver_cursor``); one that calls ``conn.execute`` joins it
        (SQLAlchemy's transaction begins without a ``BEGIN``, and commits it)."""
        lock = self._write_lock
        if lock is None or not lock.acquire(blocking=False):
            return None
        return self._driver_write_locked(lock, 0, None)

    @contextmanager
    def _driver_write_locked(
        self, lock: threading.RLock, slot: int, synced: bool | None
    ) -> Iterator[sa.Connection]:
        """The driver's write transaction on the held connection ``slot`` (SQLite),
        under ``lock`` (taken by the caller, released here); ``synced``: whether it
        commits with ``synchronous=FULL`` (None: the connection's setting as it is)."""
        try:
            with translate_errors():
                conn = self._group_conn(slot)
                if synced is not None:
                    self._synchronous(conn, slot, synced)
                _driver_statement(conn, "BEGIN IMMEDIATE")
                info = conn.info
                info[dialects.DRIVER_TRANSACTION] = True
                try:
                    yield conn
                    if conn.in_transaction():  # a piece used conn.execute: SQLAlchemy's
                        conn.commit()  # transaction is this one (dialects' on_begin)
                    else:
                        _driver_statement(conn, "COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):  # none left if COMMIT failed
                        if conn.in_transaction():
                            conn.rollback()
                        else:
                            _driver_statement(conn, "ROLLBACK")
                    raise
                finally:
                    info.pop(dialects.DRIVER_TRANSACTION, None)
                self._committed()
        finally:
            lock.release()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction."""
        with translate_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> bool:
        """True when the database answers."""
        path = self.engine.url.database
        if self.dialect == "sqlite" and path and path != ":memory:" and not os.path.exists(path):
            return False  # a pooled connection would still read the vanished file
        try:
            with self.read() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except errors.StoreUnavailable:
            return False

    def dispose(self) -> None:
        self.group.close()
        if self.checkpoints is not None:
            self.checkpoints.close()
        if self._syncer is not None:
            self._syncer.shutdown()
        for conn in self._group_conns:
            if conn is not None:
                conn.close()
        self._group_conns = [None, None, None]
        if self.loop_statements is not None:
            self.loop_statements.close()
        self.engine.dispose()


def _driver_statement(conn: sa.Connection, sql: str) -> None:
    """``sql`` on the driver's connection under ``conn``; its errors as SQLAlchemy's."""
    with driver_cursor(conn, sql, ()) as cursor:
        cursor.execute(sql)


@contextmanager
def _unsynced(conn: sa.Connection) -> Iterator[None]:
    """SQLite's ``synchronous=NORMAL`` on ``conn`` (set outside a transaction) until
    the block ends, then ``FULL`` again; a connection that cannot be set back is never
    returned to the pool."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA synchronous=FULL")
        except Exception:
            conn.invalidate()


def sync_wal(wal: Path) -> None:
    """fdatasync the WAL file ``wal`` (what ``synchronous=FULL`` does at each commit).
    A WAL gone was checkpointed into the database file, which SQLite synced."""
    try:
        fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _synced(done: Future[None]) -> None:
    try:
        done.result()
    except OSError as e:
        raise errors.StoreUnavailable(
            f"the database's changes could not be written to disk ({e.strerror or e})"
        ) from e


def on_disk() -> None:
    """The wait of a synced commit (PostgreSQL's, SQLite's ``FULL``): nothing to wait for."""


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors that mean "database unavailable" into StoreUnavailable."""
    try:
        yield
    except exc.IntegrityError:
        raise
    except (exc.OperationalError, exc.InterfaceError) as e:
        if dialects.is_disk_full(e.orig):
            raise errors.StorageFull(
                "the server's disk is full, so the database cannot store this; nothing was"
                " changed: retry once space is freed"
            ) from e
        raise errors.StoreUnavailable(
            f"the database is unavailable ({type(e.orig).__name__ if e.orig else 'error'});"
            " retry the request"
        ) from e
    except exc.DBAPIError as e:
        if e.connection_invalidated:
            raise errors.StoreUnavailable("the database connection was lost; retry") from e
        raise
