"""PostgreSQL submits from the event loop on its own connection: committed before the
answer, notified to other nodes, grouped while one is in flight, a failure alone, and
a lost connection replaced (real PostgreSQL; skipped with a reason where none is found)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from jobyard.domain.auth import Principal, Role
from jobyard.domain.states import JobState
from jobyard.store.database import Database
from jobyard.store.loop_statements import LoopStatements
from jobyard.store.tables import tenants
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

pytestmark = pytest.mark.postgres

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ADD = "INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, $2) RETURNING id"
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    if not db_url.startswith("postgresql"):
        pytest.skip("the loop's own connection is PostgreSQL's (SQLite commits in the loop)")
    database = Database(db_url)
    yield database
    database.dispose()


def _statements(db: Database) -> LoopStatements:
    assert db.loop_statements is not None
    return db.loop_statements


def _ids(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(sa.select(tenants.c.id)).scalars())


def test_a_submit_through_the_server_is_committed_and_notified_before_its_answer(
    make_services: ServicesFactory, serve: Callable[[Services], LiveServer], db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the loop's own connection is PostgreSQL's (SQLite commits in the loop)")
    services = make_services(run_dispatcher=False)
    live = serve(services)
    statements = _statements(services.db)
    dsn = services.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener, live.client() as client:
        client.submit("true")  # the key and quotas read: the next ones take the fast path
        listener.execute("LISTEN jobyard_queue")
        before = statements.transactions
        job = client.submit("true")
        with psycopg.connect(dsn, autocommit=True) as other:  # another node's view
            row = other.execute("SELECT state FROM jobs WHERE id = %s", (job.id,)).fetchone()
            kinds = other.execute(
                "SELECT to_state FROM job_events WHERE job_id = %s", (job.id,)
            ).fetchall()
        heard = list(listener.notifies(timeout=10, stop_after=1))
    assert statements.transactions == before + 1  # on the loop's own connection
    assert row == ("queued",) and kinds == [("queued",)]
    assert [n.channel for n in heard] == ["jobyard_queue"]
    assert services.jobs.get(ADMIN, job.id).state is JobState.QUEUED


def test_statements_that_arrive_together_commit_together(db: Database) -> None:
    statements = _statements(db)

    async def turn() -> list[object]:
        pieces = [statements.run(ADD, (f"s{i}", NOW)) for i in range(10)]
        return await asyncio.gather(*pieces)

    before = statements.transactions
    assert asyncio.run(turn()) == [(f"s{i}",) for i in range(10)]
    assert statements.transactions == before + 1  # one turn of the loop: one transaction
    assert {f"s{i}" for i in range(10)} <= _ids(db)

    async def two_turns() -> list[object]:
        first = asyncio.ensure_future(statements.run(ADD, ("first", NOW)))
        await asyncio.sleep(0)  # the first is sent alone; these wait for it
        later = [statements.run(ADD, (f"t{i}", NOW)) for i in range(5)]
        return await asyncio.gather(first, *later)

    before = statements.transactions
    assert asyncio.run(two_turns()) == [("first",)] + [(f"t{i}",) for i in range(5)]
    assert statements.transactions == before + 2


def test_a_failing_statement_fails_alone(db: Database) -> None:
    statements = _statements(db)

    async def turn() -> list[object]:
        pieces = [statements.run(ADD, (f"f{i}", NOW)) for i in range(4)]
        pieces.append(statements.run(ADD, ("f2", NOW)))  # the same key again
        return await asyncio.gather(*pieces, return_exceptions=True)

    results = asyncio.run(turn())
    assert results[:4] == [(f"f{i}",) for i in range(4)]
    assert isinstance(results[4], exc.IntegrityError)
    with pytest.raises(exc.IntegrityError):  # alone, and the connection is still usable
        asyncio.run(statements.run(ADD, ("f0", NOW)))
    assert asyncio.run(statements.run(ADD, ("f9", NOW))) == ("f9",)
    assert {"f0", "f1", "f2", "f3", "f9"} <= _ids(db)


def test_a_lost_connection_is_replaced(db: Database) -> None:
    statements = _statements(db)
    assert asyncio.run(statements.run("SELECT pg_backend_pid()", ())) is not None
    (pid,) = asyncio.run(statements.run("SELECT pg_backend_pid()", ()))
    with db.write() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(exc.OperationalError) as lost:
        asyncio.run(statements.run(ADD, ("lost", NOW)))
    assert lost.value.connection_invalidated
    assert asyncio.run(statements.run(ADD, ("back", NOW))) == ("back",)
    assert "back" in _ids(db) and "lost" not in _ids(db)


def test_a_statement_that_cannot_be_prepared_fails_with_its_own_error(db: Database) -> None:
    statements = _statements(db)
    with pytest.raises(exc.ProgrammingError) as bad:  # its own error, not "aborted"
        asyncio.run(statements.run("SELECT nothing FROM nowhere", ()))
    assert "nowhere" in str(bad.value)

    async def turn() -> list[object]:
        pieces = [statements.run(ADD, ("p1", NOW)), statements.run("SELEC 1", ())]
        return await asyncio.gather(*pieces, return_exceptions=True)

    first, second = asyncio.run(turn())
    assert first == ("p1",) and isinstance(second, exc.ProgrammingError)

    async def unadaptable() -> list[object]:
        pieces = [statements.run(ADD, ("p3", NOW)), statements.run(ADD, (object(), NOW))]
        return await asyncio.gather(*pieces, return_exceptions=True)

    third, fourth = asyncio.run(unadaptable())  # nothing of the pair sent, then each alone
    assert third == ("p3",) and isinstance(fourth, exc.ProgrammingError)
    assert asyncio.run(statements.run(ADD, ("p2", NOW))) == ("p2",)
    assert {"p1", "p2", "p3"} <= _ids(db)


def test_parameters_of_other_types_and_many_statements_are_answered(db: Database) -> None:
    """A statement whose parameters are adapted to other types (a small and a large int)
    is prepared again for them; past the prepared statements kept, the unnamed one."""
    statements = _statements(db)

    async def turn() -> list[object]:
        out: list[object] = [
            await statements.run("SELECT $1 + 1", (n,)) for n in (1, 2**40, 2, 2**40 + 1)
        ]
        out += [await statements.run(f"SELECT {i} + $1", (i,)) for i in range(80)]
        return out

    answers = asyncio.run(turn())
    assert answers[:4] == [(2,), (2**40 + 1,), (3,), (2**40 + 2,)]
    assert answers[4:] == [(2 * i,) for i in range(80)]
