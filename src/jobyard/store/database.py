"""The database handle: an engine plus short read and write transactions."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine

from jobyard import errors
from jobyard.store import dialects, tables
from jobyard.store.group_commit import GroupCommit
from jobyard.store.prepared import driver_cursor

if TYPE_CHECKING:
    from jobyard.store.loop_statements import LoopStatements


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
        self._group_conns: list[sa.Connection | None] = [None, None]
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
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        with contextlib.ExitStack() as stack:
            if self._write_lock is not None:
                stack.enter_context(self._write_lock)
            stack.enter_context(translate_errors())
            conn = stack.enter_context(self.engine.connect())
            conn = conn.execution_options(**{dialects.WRITE_OPTION: True})
            with conn.begin():
                yield conn

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

    def _group_conn(self, slot: int) -> sa.Connection:
        """The held connection ``slot``, replaced if it broke."""
        conn = self._group_conns[slot]
        if conn is None or conn.invalidated:
            if conn is not None:
                conn.close()
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
        through SQLAlchemy's) for work that runs its statements on the driver's
        cursor (``prepared.driver_cursor``); one that calls ``conn.execute`` joins it (SQLAlchemy's
        transaction begins without a ``BEGIN``, and commits it)."""
        lock = self._write_lock
        if lock is None or not lock.acquire(blocking=False):
            return None
        return self._driver_write_locked(lock)

    @contextmanager
    def _driver_write_locked(self, lock: threading.RLock) -> Iterator[sa.Connection]:
        try:
            with translate_errors():
                conn = self._group_conn(0)
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
        for conn in self._group_conns:
            if conn is not None:
                conn.close()
        self._group_conns = [None, None]
        if self.loop_statements is not None:
            self.loop_statements.close()
        self.engine.dispose()


def _driver_statement(conn: sa.Connection, sql: str) -> None:
    """``sql`` on the driver's connection under ``conn``; its errors as SQLAlchemy's."""
    with driver_cursor(conn, sql, ()) as cursor:
        cursor.execute(sql)


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
