"""Group commit on a real database: the work that waits is committed together, one
failing piece is rolled back alone, and answers come only after the commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.store.prepared import driver_cursor
from jobyard.store.tables import tenants

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


def _add(tenant_id: str) -> Callable[[sa.Connection], str]:
    def work(conn: sa.Connection) -> str:
        conn.execute(tenants.insert().values(id=tenant_id, name=tenant_id, created_at=NOW))
        return tenant_id

    return work


def _ids(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(sa.select(tenants.c.id)).scalars())


def _hold(db: Database) -> tuple[threading.Event, Future[str]]:
    """Keep the writer thread busy until the returned event is set."""
    started, gate = threading.Event(), threading.Event()

    def blocker(conn: sa.Connection) -> str:
        started.set()
        assert gate.wait(10)
        return "first"

    held = db.group.submit(blocker)
    assert started.wait(10)
    return gate, held


def test_waiting_work_is_committed_in_one_transaction(db: Database) -> None:
    gate, first = _hold(db)
    before = db.group.transactions
    waiting = [db.group.submit(_add(f"t{i}")) for i in range(20)]
    assert db.group.waiting() == 20 and not any(f.done() for f in waiting)
    gate.set()
    assert first.result(10) == "first"
    assert [f.result(10) for f in waiting] == [f"t{i}" for i in range(20)]
    assert db.group.transactions == before + 2  # the blocker's, then one for the 20
    assert {f"t{i}" for i in range(20)} <= _ids(db)


def test_a_failing_piece_fails_alone(db: Database) -> None:
    """A piece that fails its group's transaction: the group is rolled back and each
    piece runs again on its own, so only that piece fails."""
    gate, first = _hold(db)
    waiting = [db.group.submit(_add(f"u{i}")) for i in range(5)]
    clash = db.group.submit(_add("u3"))  # the same key again
    later = db.group.submit(_add("u99"))
    gate.set()
    first.result(10)
    assert [f.result(10) for f in waiting] == [f"u{i}" for i in range(5)]
    with pytest.raises(exc.IntegrityError):
        clash.result(10)
    assert later.result(10) == "u99"
    assert {f"u{i}" for i in range(5)} | {"u99"} <= _ids(db)


def test_a_lone_failure_fails_only_its_caller(db: Database) -> None:
    assert db.group.run(_add("solo")) == "solo"
    with pytest.raises(exc.IntegrityError):
        db.group.run(_add("solo"))

    def broken(conn: sa.Connection) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        db.group.run(broken)
    assert db.group.run(_add("after")) == "after"
    assert {"solo", "after"} <= _ids(db)


def test_close_commits_what_is_queued(db_url: str) -> None:
    database = Database(db_url)
    upgrade(database)
    futures = [database.group.submit(_add(f"c{i}")) for i in range(5)]
    database.dispose()
    assert [f.result(0) for f in futures] == [f"c{i}" for i in range(5)]
    again = Database(db_url)
    try:
        assert {f"c{i}" for i in range(5)} <= _ids(again)
    finally:
        again.dispose()


def test_one_turn_of_the_event_loop_is_one_transaction(db: Database) -> None:
    """Pieces submitted from the event loop in the same turn commit together: in the
    loop's thread when the database is free at once (SQLite), else on the writer."""
    import asyncio

    threads: set[int] = set()

    def add(tenant_id: str) -> Callable[[sa.Connection], str]:
        def work(conn: sa.Connection) -> str:
            threads.add(threading.get_ident())
            return _add(tenant_id)(conn)

        return work

    async def turn(prefix: str, clash: bool = False) -> list[object]:
        pieces = [db.group.run_async(add(f"{prefix}{i}")) for i in range(10)]
        if clash:
            pieces.append(db.group.run_async(add(f"{prefix}3")))  # the same key: fails alone
        return await asyncio.gather(*pieces, return_exceptions=True)

    before = db.group.transactions
    results = asyncio.run(turn("a"))
    assert results == [f"a{i}" for i in range(10)]
    assert db.group.transactions == before + 1
    inline = db.dialect == "sqlite"
    assert (threads == {threading.get_ident()}) is inline

    results = asyncio.run(turn("c", clash=True))
    assert results[:10] == [f"c{i}" for i in range(10)]
    assert isinstance(results[10], exc.IntegrityError)

    # a writer holding the database: the turn goes to the writer thread, still together
    gate, held = _hold(db)

    async def blocked_turn() -> list[object]:
        task = asyncio.ensure_future(turn("b"))
        while db.group.waiting() < 10:  # all ten queued behind the blocker
            await asyncio.sleep(0)
        gate.set()
        return await task

    threads.clear()
    before = db.group.transactions
    results = asyncio.run(blocked_turn())
    held.result(10)
    assert results == [f"b{i}" for i in range(10)]
    assert db.group.transactions == before + 2  # the blocker's, then the ten
    assert threading.get_ident() not in threads
    assert {f"{p}{i}" for p in "abc" for i in range(10)} <= _ids(db)


def _autocommit(conn: sa.Connection) -> bool:
    return bool(conn.connection.driver_connection.autocommit)  # type: ignore[union-attr]


def test_a_lone_statement_commits_by_itself_on_postgresql(db: Database) -> None:
    """A piece of one statement, alone in its group, runs without a transaction block
    on PostgreSQL (the statement commits itself: one round trip); in a group, or on
    SQLite, it shares the group's transaction as any piece."""
    seen: list[bool] = []

    def add(tenant_id: str) -> Callable[[sa.Connection], str]:
        def work(conn: sa.Connection) -> str:
            seen.append(db.dialect == "postgresql" and _autocommit(conn))
            return _add(tenant_id)(conn)

        return work

    before = db.group.transactions
    assert db.group.run(add("lone"), one_statement=True) == "lone"
    assert "lone" in _ids(db)  # committed before the answer
    assert seen == [db.dialect == "postgresql"]
    with pytest.raises(exc.IntegrityError):  # fails alone, leaves nothing half done
        db.group.run(add("lone"), one_statement=True)
    assert db.group.run(add("next"), one_statement=True) == "next"
    assert db.group.run(add("several"), one_statement=False) == "several"
    assert seen[-1] is False  # a piece that may be several statements: a transaction

    gate, first = _hold(db)
    waiting = [db.group.submit(add(f"g{i}"), one_statement=True) for i in range(3)]
    seen.clear()
    gate.set()
    first.result(10)
    assert [f.result(10) for f in waiting] == ["g0", "g1", "g2"]
    assert seen == [False, False, False]  # together: one transaction, one commit
    assert db.group.transactions == before + 5  # lone, next, several, the blocker, the 3
    assert {"lone", "next", "several", "g0", "g1", "g2"} <= _ids(db)


def _add_on_driver(tenant_id: str) -> Callable[[sa.Connection], str]:
    """:func:`_add` through the driver's cursor, as the submit's prepared insert does."""
    sql = "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)"

    def work(conn: sa.Connection) -> str:
        with driver_cursor(conn, sql, ()) as cursor:
            cursor.execute(sql, (tenant_id, tenant_id, NOW.isoformat(sep=" ")))
        return tenant_id

    return work


def test_the_loops_sqlite_transaction_on_the_driver_commits_and_rolls_back(
    db: Database,
) -> None:
    """SQLite: a turn of driver-only pieces commits in the driver's own transaction
    before any is answered; a failing piece rolls it back (nothing of the group stays
    half-done) and the others commit alone; the connection then serves SQLAlchemy's own
    transactions as before."""
    if db.dialect != "sqlite":
        pytest.skip("the loop commits inline on SQLite only")
    import asyncio

    async def turn(names: list[str]) -> list[str | BaseException]:
        pieces = [db.group.run_async(_add_on_driver(n)) for n in names]
        results = await asyncio.gather(*pieces, return_exceptions=True)
        # answered only after the commit: another connection sees every stored row
        assert {n for n, r in zip(names, results, strict=True) if r == n} <= _ids(db)
        return results

    before = db.group.transactions
    assert asyncio.run(turn(["d1", "d2"])) == ["d1", "d2"]
    assert db.group.transactions == before + 1
    results = asyncio.run(turn(["d3", "d1", "d4"]))  # d1 again: fails alone
    assert results[0] == "d3" and results[2] == "d4"
    assert isinstance(results[1], exc.IntegrityError)
    assert db.group.run(_add("d5")) == "d5"  # SQLAlchemy's transaction on the same connection
    assert {"d1", "d2", "d3", "d4", "d5"} <= _ids(db)
