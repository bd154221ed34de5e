"""Statements that commit by themselves, run from the event loop on PostgreSQL without a
thread: the loop's own asynchronous psycopg connection, in autocommit mode.

Handing a submit to the group-commit writer thread and its answer back costs two thread
wake-ups (a futex and the loop's self-pipe; in a VM each an interrupt to the other
core), which were the largest single share of a PostgreSQL submit's server CPU after
its round trips. Here the loop sends the statement and awaits its answer like any other
socket: one round trip, committed (``synchronous_commit`` as configured) before the
statement's result is handed back.

Group commit is kept: one statement is in flight at a time, and the statements that
arrive meanwhile are sent next, together, in one transaction. When one of them fails
that transaction, each runs again alone, so only that one fails. Errors come out as
SQLAlchemy's (as from :meth:`sqlalchemy.Connection.execute`); a connection that broke
is replaced on the next call.

The connection is driven through libpq (psycopg's ``pgconn``) in pipeline mode rather
than through psycopg's cursors: the statements are sent (each prepared on first use,
psycopg's parameter adapters), then a Sync, in one write; PostgreSQL runs everything
up to the Sync as one implicit transaction and commits it there, and the answer is
read once the Sync's result is in (after the commit). The socket stays registered
with the event loop for as long as the connection lives. psycopg's cursor path cost
the loop ≈ 100 µs more per statement: a cursor and its adapters' set-up, its lock,
the prepared-statement cache, and a reader added, a timer armed and both removed
again for every wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import ConnStatus, ExecStatus
from psycopg.pq.abc import PGresult
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

Row = tuple[Any, ...]
_Piece = tuple[str, tuple[Any, ...], "asyncio.Future[Row]"]
_AUTO = PyFormat.AUTO
TUPLES_OK, COMMAND_OK = ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK
PIPELINE_SYNC, BAD = ExecStatus.PIPELINE_SYNC, ConnStatus.BAD


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
        self._link: _Link | None = None
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
            link = await self._connection()
            (result,) = await link.send([(sql, params)])
            row = link.first_row(result)
        except Exception as e:
            _settle(future, error=self._wrapped(sql, params, e))
            return
        self.transactions += 1
        _settle(future, row=row)

    async def _together(self, group: list[_Piece]) -> bool:
        """One transaction for ``group``; False (nothing settled) when it failed."""
        try:
            link = await self._connection()
            results = await link.send([(sql, params) for sql, params, _ in group])
            rows = [link.first_row(result) for result in results]
        except Exception as e:
            self._wrapped(group[0][0], group[0][1], e)  # drops a broken connection
            return False
        self.transactions += 1
        for (_, _, future), row in zip(group, rows, strict=True):
            _settle(future, row=row)
        return True

    async def _connection(self) -> _Link:
        link = self._link
        if link is None or link.lost:
            self.close()
            link = self._link = _Link(await self._connect())
        return link

    def _wrapped(self, sql: str, params: Any, error: Exception) -> Exception:
        """A driver's ``error`` as SQLAlchemy raises it; a lost connection is dropped."""
        if not isinstance(error, psycopg.Error):
            return error
        link = self._link
        lost = link is None or link.lost
        if lost:
            self.close()
        return exc.DBAPIError.instance(
            sql, params, error, psycopg.Error, dialect=self._dialect, connection_invalidated=lost
        )

    def close(self) -> None:
        """Close the connection (it is opened again when needed)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()


class _Link:
    """An autocommit connection in libpq's pipeline mode, read by a callback of the event
    loop that uses it."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._pg = conn.pgconn
        self._fd = self._pg.socket
        self._adapt = Transformer(conn)
        self._encoding = conn.info.encoding
        self._pg.enter_pipeline_mode()
        #: the statements prepared on this connection, by text and parameter types
        self._names: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._made = 0  #: statements named so far (a name is never used twice)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reply: asyncio.Future[list[PGresult]] | None = None
        self._results: list[PGresult] = []
        #: the connection failed (a socket error, or the server closed it)
        self.lost = False

    async def send(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[PGresult]:
        """Run ``statements`` in one transaction (committed when this returns); their
        results, in order (a failed one's error and the rest aborted, none committed)."""
        loop = asyncio.get_running_loop()
        self._attach(loop)
        pg, adapt = self._pg, self._adapt
        dumped = []  # all adapted first: nothing is sent if one cannot be
        for sql, params in statements:
            values = adapt.dump_sequence(params, [_AUTO] * len(params))
            dumped.append((sql, tuple(adapt.types or ()), values, list(adapt.formats or ())))
        prepares: list[tuple[int, tuple[str, tuple[int, ...]], bytes]] = []
        named: dict[tuple[str, tuple[int, ...]], bytes] = {}
        sent = 0
        try:
            for sql, types, values, formats in dumped:
                key = (sql, types)
                name = self._names.get(key) or named.get(key)
                if name is None:
                    name = b""  # the unnamed statement, once this many are kept
                    if len(self._names) < _MAX_PREPARED:
                        self._made += 1
                        name = named[key] = b"jobyard_%d" % self._made
                    prepares.append((sent, key, name))
                    pg.send_prepare(name, sql.encode(), param_types=types)
                    sent += 1
                pg.send_query_prepared(name, values, param_formats=formats)
                sent += 1
            pg.pipeline_sync()
            self._reply = reply = loop.create_future()
            while pg.flush():
                await self._writable(loop)
            results = await reply
        except BaseException:
            # a failed socket, or a wait given up (shutdown): results may still come,
            # which the next statements would read as theirs; a new connection instead
            self._lose()
            raise
        finally:
            self._reply = None
        out: list[PGresult] = []
        prepared = {i: (key, name) for i, key, name in prepares}
        failed: PGresult | None = None  #: a statement's failed preparation
        for i, result in enumerate(results):
            if i in prepared:
                if result.status == COMMAND_OK:
                    if prepared[i][1]:
                        self._names[prepared[i][0]] = prepared[i][1]
                else:
                    failed = result
            else:
                out.append(failed or result)  # the error of its own preparation
                failed = None
        return out

    def first_row(self, result: PGresult) -> Row | None:
        """The first row of a statement's ``result`` (psycopg's loaders), None when it
        has none; the statement's error, if it failed."""
        if result.status not in (TUPLES_OK, COMMAND_OK):
            raise psycopg.errors.error_from_result(result, encoding=self._encoding)
        if not result.ntuples:
            return None
        self._adapt.set_pgresult(result)
        row: Row = self._adapt.load_row(0, tuple)
        return row

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the socket from ``loop`` (the first call's, or a new one's in tests)."""
        if self._loop is loop:
            return
        self._detach()
        loop.add_reader(self._fd, self._readable)
        self._loop = loop

    def _detach(self) -> None:
        old, self._loop = self._loop, None
        if old is not None and not old.is_closed():
            old.remove_reader(self._fd)

    def _readable(self) -> None:
        """The socket has data: the results of the statements sent, up to their Sync's
        (which settles the reply); or, idle, the server's notices or its end."""
        pg = self._pg
        try:
            pg.consume_input()
            while self._reply is not None and not pg.is_busy():
                result = pg.get_result()
                if result is None:  # the end of one statement's results
                    continue
                if result.status == PIPELINE_SYNC:
                    reply, results, self._results = self._reply, self._results, []
                    self._reply = None
                    if not reply.done():
                        reply.set_result(results)
                    break
                self._results.append(result)
            if pg.status == BAD:
                raise psycopg.OperationalError("the connection to the server was lost")
        except psycopg.Error as e:
            self._lose()
            if self._reply is not None and not self._reply.done():
                self._reply.set_exception(e)

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self._fd, wake)
        try:
            await ready
        finally:
            loop.remove_writer(self._fd)

    def _lose(self) -> None:
        """Stop reading a connection that failed (its socket would stay readable)."""
        self.lost = True
        self._detach()

    def close(self) -> None:
        self._detach()
        if not self._conn.closed:
            self._pg.finish()  # what AsyncConnection.close() does, without a loop


#: the prepared statements a connection keeps at most (others go unnamed)
_MAX_PREPARED = 64


def _settle(future: asyncio.Future[Row], *, row: Row | None = None, error: Any = None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    elif row is None:
        future.set_exception(RuntimeError("the statement returned no row"))
    else:
        future.set_result(row)
