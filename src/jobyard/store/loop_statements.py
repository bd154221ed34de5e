"""Statements that commit by themselves, run from the event loop on PostgreSQL without a
thread: the loop's own asynchronous psycopg connection, in autocommit mode.

Handing a submit to the group-commit writer thread and its answer back costs two thread
wake-ups (a futex and the loop's self-pipe; in a VM each an interrupt to the other
core), which were the largest single share of a PostgreSQL submit's server CPU after
its round trips. Here the loop sends the statement and awaits its answer like any other
socket: one round trip, committed (``synchronous_commit`` as configured) before the
statement's result is handed back.

Group commit is kept: one statement is in flight at a time, and the statements that
arrive meanwhile are sent next, together, in one transaction (``BEGIN``, the
statements, ``COMMIT`` in one pipeline). When one of them fails that transaction, each
runs again alone, so only that one fails. Errors come out as SQLAlchemy's (as from
:meth:`sqlalchemy.Connection.execute`); a connection that broke is replaced on the
next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

Row = tuple[Any, ...]
_Piece = tuple[str, tuple[Any, ...], "asyncio.Future[Row]"]


def connector(dialect: Dialect, url: Any) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    """Opens an autocommit connection to ``url`` as ``dialect`` opens its own (the same
    connection arguments and type adapters)."""
    args, kwargs = dialect.create_connect_args(url)

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(*args, autocommit=True, **kwargs)

    return connect


class LoopStatements:
    """One-statement transactions from one event loop at a time (the server's)."""

    def __init__(
        self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], dialect: Dialect
    ) -> None:
        self._connect = connect
        self._dialect = dialect
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._waiting: list[_Piece] = []
        self._drainer: asyncio.Future[None] | None = None  #: the task sending them
        self.transactions = 0  #: transactions committed (for tests)

    async def run(self, sql: str, params: tuple[Any, ...]) -> Row:
        """Run ``sql`` (``$n`` placeholders) with ``params``; its first row once
        committed. Statements that arrive while one is in flight commit together."""
        future: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._waiting.append((sql, params, future))
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                live = [p for p in group if not p[2].cancelled()]
                if len(live) == 1:
                    await self._alone(live[0])
                elif live and not await self._together(live):
                    for piece in live:
                        await self._alone(piece)
        finally:
            self._drainer = None

    async def _alone(self, piece: _Piece) -> None:
        sql, params, future = piece
        try:
            conn = await self._connection()
            async with psycopg.AsyncRawCursor(conn) as cursor:
                await cursor.execute(sql, params)
                row = await cursor.fetchone()
        except Exception as e:
            _settle(future, error=self._wrapped(sql, params, e))
            return
        self.transactions += 1
        _settle(future, row=row)

    async def _together(self, group: list[_Piece]) -> bool:
        """One transaction for ``group``; False (nothing settled) when it failed."""
        try:
            conn = await self._connection()
            cursors = [psycopg.AsyncRawCursor(conn) for _ in group]
            async with conn.pipeline(), conn.transaction():
                for cursor, (sql, params, _) in zip(cursors, group, strict=True):
                    await cursor.execute(sql, params)
            rows = [await cursor.fetchone() for cursor in cursors]
        except Exception as e:
            self._wrapped(group[0][0], group[0][1], e)  # drops a broken connection
            return False
        self.transactions += 1
        for (_, _, future), row in zip(group, rows, strict=True):
            _settle(future, row=row)
        return True

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = await self._connect()
        return self._conn

    def _wrapped(self, sql: str, params: Any, error: Exception) -> Exception:
        """A driver's ``error`` as SQLAlchemy raises it; a lost connection is dropped."""
        if not isinstance(error, psycopg.Error):
            return error
        conn = self._conn
        lost = conn is None or conn.closed or conn.broken  # the dialect's own test
        if lost:
            self.close()
        return exc.DBAPIError.instance(
            sql, params, error, psycopg.Error, dialect=self._dialect, connection_invalidated=lost
        )

    def close(self) -> None:
        """Close the connection (it is opened again when needed)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # what AsyncConnection.close() does, without a loop


def _settle(future: asyncio.Future[Row], *, row: Row | None = None, error: Any = None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    elif row is None:
        future.set_exception(RuntimeError("the statement returned no row"))
    else:
        future.set_result(row)
