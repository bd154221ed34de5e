"""The differences between SQLite and PostgreSQL, and nothing else.

* connection set-up (SQLite pragmas; ``BEGIN IMMEDIATE`` for write transactions),
* claiming rows (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite has one writer, so the
  ``BEGIN IMMEDIATE`` transaction already serialises claims),
* locking a row for the rest of the transaction (PostgreSQL ``FOR NO KEY UPDATE``),
* ``INSERT … ON CONFLICT`` (do nothing; the fair-share usage upsert),
* seconds since the epoch of a timestamp (:class:`EpochSeconds`),
* a job and its first event inserted by one statement (PostgreSQL's data-modifying CTE).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from jobyard.store.checkpoints import BACKSTOP_FRAMES
from jobyard.store.prepared import driver_cursor

SQLITE_BUSY_TIMEOUT_MS = 5000
WRITE_OPTION = "jobyard_write"
#: a connection's ``info`` key: a write transaction begun on the driver's connection
DRIVER_TRANSACTION = "jobyard_driver_transaction"
_BEGIN_WRITE = "BEGIN IMMEDIATE"
_BEGIN_READ = "BEGIN DEFERRED"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` configured for jobyard's transactions."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=kwargs.pop("pool_size", 20),
            max_overflow=kwargs.pop("max_overflow", 20),
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=kwargs.pop("pool_size", 10),
        max_overflow=kwargs.pop("max_overflow", 20),
        **kwargs,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # a statement that may write several rows (an insert or update of ``jobs``,
        # whose triggers keep ``job_counts``) keeps a statement journal of the pages it
        # changes; with temporary files it spilled to one, ≈ 13 page writes a row
        # (syscalls, no fsync): ≈ 10 µs of each such statement; in memory, a copy
        cur.execute("PRAGMA temp_store=MEMORY")
        # the WAL is copied back by the database's checkpoint thread (``checkpoints``);
        # a commit does it itself only if that thread fell this far behind
        cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_FRAMES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        if conn.info.get(DRIVER_TRANSACTION):
            return  # inside the driver's own (Database._group_write_now): join it
        sql = _BEGIN_WRITE if conn.get_execution_options().get(WRITE_OPTION) else _BEGIN_READ
        # on the driver's cursor (its errors as SQLAlchemy's): ≈ 5 µs, against ≈ 30 µs
        # through ``exec_driver_sql``'s execution context, for every transaction
        with driver_cursor(conn, sql, ()) as cursor:
            cursor.execute(sql)


def lock_for_claim(stmt: sa.Select[Any], dialect_name: str) -> sa.Select[Any]:
    """Make a SELECT of candidate rows skip rows other nodes are claiming."""
    if dialect_name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def lock_row(stmt: sa.Select[Any], dialect_name: str) -> sa.Select[Any]:
    """Make a SELECT lock its row until the transaction ends (SQLite's ``BEGIN
    IMMEDIATE`` write transaction already holds the whole database). PostgreSQL's
    ``FOR NO KEY UPDATE``: transactions that lock the row wait for each other, while
    inserts whose foreign keys point at the row (jobs and events of a tenant) do not."""
    if dialect_name == "postgresql":
        return stmt.with_for_update(key_share=True)
    return stmt


def insert_with_conflicts(table: sa.Table, dialect_name: str) -> Any:
    """The dialect's ``INSERT`` that takes ``ON CONFLICT`` clauses."""
    if dialect_name == "postgresql":
        # imported here: a server on SQLite never loads the PostgreSQL dialect (≈ 2 MB)
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_conflicts(table: sa.Table, dialect_name: str) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` for the engine's dialect."""
    return insert_with_conflicts(table, dialect_name).on_conflict_do_nothing()


QUEUE_CHANNEL = "jobyard_queue"


def inserts_with_cte(dialect_name: str) -> bool:
    """Whether one statement may insert a row and the rows that refer to it (a
    data-modifying CTE: PostgreSQL; SQLite has none, and no round trips to save)."""
    return dialect_name == "postgresql"


#: the SQL expression that notifies the queue's listeners (:func:`notify_queue`) from
#: inside another statement
NOTIFY_QUEUE_SQL = f"pg_notify('{QUEUE_CHANNEL}', '')"


def notify_queue(conn: sa.Connection) -> None:
    """Tell listening nodes that a job became runnable (PostgreSQL ``NOTIFY``, delivered
    only if the transaction commits; identical notifications fold into one). SQLite runs
    on one host, where the in-process wakeup suffices."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {QUEUE_CHANNEL}")


class EpochSeconds(FunctionElement[float]):
    """Seconds since the epoch of a timestamp column, in SQL."""

    type = sa.Float()
    name = "epoch_s"
    inherit_cache = True


@compiles(EpochSeconds, "sqlite")
def _epoch_sqlite(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps naive UTC text; julianday() reads it (millisecond precision)
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(EpochSeconds, "postgresql")
def _epoch_pg(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS FLOAT)"


def is_disk_full(driver_error: BaseException | None) -> bool:
    """Whether a driver error says the disk is full: SQLite's ``SQLITE_FULL`` ("database
    or disk is full") or PostgreSQL's ``disk_full`` (SQLSTATE 53100)."""
    if driver_error is None:
        return False
    if getattr(driver_error, "sqlite_errorname", None) == "SQLITE_FULL":
        return True
    if getattr(driver_error, "sqlstate", None) == "53100":
        return True
    return "database or disk is full" in str(driver_error) or "No space left on device" in str(
        driver_error
    )
