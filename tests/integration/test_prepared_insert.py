"""A prepared insert hands the driver what SQLAlchemy's own bind processors make of each
value, including the values it works out once (None, a JSON column's ``{}``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from jobyard.domain.jobs import JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.store import tables
from jobyard.store.database import Database
from jobyard.store.jobs import (
    _NEW_EVENT,
    _NEW_ROW,
    _PLAIN_EVENT,
    _PLAIN_ROW,
    NewJob,
    insert_parameters,
)
from jobyard.store.migrate import upgrade
from jobyard.store.prepared import PreparedInsert, _numbered
from jobyard.store.tables import job_events, jobs, tenants


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_parameters_are_what_the_column_types_make_of_the_values(dialect: Dialect) -> None:
    now = datetime(2026, 12, 7, 4, 40, tzinfo=UTC)
    row: dict[str, Any] = {
        "id": "j1",
        "tenant_id": "default",
        "parameters": {},
        "metadata": {"a": "b"},
        "env": {},
        "argv": None,
        "notifications": None,
        "scheduled_at": None,
        "created_at": now,
        "continue_on_error": False,
    }
    prepared = PreparedInsert(jobs, tuple(row), dialect, returning=None)
    expected = {}
    for name, value in row.items():
        process = jobs.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        expected[name] = process(value) if process is not None else value
    params = prepared.parameters(row)
    order = prepared.order or ()
    got = dict(params) if isinstance(params, dict) else dict(zip(order, params, strict=True))
    assert _plain(got) == _plain(expected)
    assert _plain(prepared.values(row)) == _plain(expected)
    assert _plain(got)["parameters"] == _plain(got)["env"] != _plain(got)["metadata"]


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """psycopg's ``Json`` wrapper (no equality of its own) as what it wraps."""
    return {k: ("json", v.obj) if type(v).__name__ == "Json" else v for k, v in params.items()}


def test_execute_many_leaves_out_the_columns_null_in_every_row() -> None:
    """The rows stored are those SQLAlchemy's own insert stores; the statement names no
    column that is NULL in every row (a column set in one row stays in)."""
    now = datetime(2026, 12, 7, 4, 40, tzinfo=UTC)
    specs = [
        JobSpec(entrypoint="true"),
        JobSpec(entrypoint="true", name="second", parameters={"a": 1}),
        JobSpec(argv=("echo", "hi"), timeout_s=5.0),
    ]
    rows = [
        NewJob("default", spec, JobState.QUEUED, 1.0 + i, now, None, "queued").row()
        for i, spec in enumerate(specs)
    ]
    stored = []
    for prepared in (True, False):
        engine = sa.create_engine("sqlite://")
        tables.metadata.create_all(engine)
        statements: list[str] = []
        with engine.begin() as conn:
            conn.connection.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
            if prepared:
                insert = PreparedInsert(jobs, tuple(rows[0]), conn.dialect, returning=None)
                insert.execute_many(conn, rows)
                (sql,) = [s for s in statements if s.startswith("INSERT")][:1]
                columns = sql.split("(", 1)[1].split(")", 1)[0].split(", ")
                assert {"name", "argv", "timeout_s", "entrypoint"} <= set(columns)
                assert not {"description", "job_type", "notifications"} & set(columns)
            else:
                conn.execute(jobs.insert(), rows)
        with engine.connect() as conn:
            stored.append(conn.execute(sa.select(jobs).order_by(jobs.c.seq)).all())
    assert stored[0] == stored[1]
    assert [r.name for r in stored[0]] == [None, "second", None]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_parameters_read_from_new_jobs_are_those_of_their_rows(dialect: Dialect) -> None:
    """A batch's parameters read straight from its NewJobs equal those of their rows."""
    now = datetime(2026, 12, 7, 4, 40, tzinfo=UTC)
    batch = [
        NewJob("t", JobSpec(entrypoint="true"), JobState.QUEUED, 1.0, now, None, "q"),
        NewJob(
            "t",
            JobSpec(
                argv=("echo", "hi"),
                name="n",
                parameters={"a": [1, 2]},
                env={"X": "1"},
                retry_on=("failed",),
                input_bindings=({"role": "r", "value": 3},),
                scheduled_at=datetime(2099, 1, 1, tzinfo=UTC),
                priority=Priority.HIGH,
            ),
            JobState.SCHEDULED,
            2.5,
            now,
            "v2:h",
            "s",
        ),
    ]
    insert = PreparedInsert(jobs, tuple(batch[0].row()), dialect, returning=None)
    got = [_by_name(insert, p) for p in insert_parameters(insert, batch, _NEW_ROW, _PLAIN_ROW)]
    assert got == [_by_name(insert, insert.parameters(n.row())) for n in batch]
    assert got[0] != got[1]
    events = PreparedInsert(job_events, tuple(batch[0].event()), dialect, returning=None)
    got = [_by_name(events, p) for p in insert_parameters(events, batch, _NEW_EVENT, _PLAIN_EVENT)]
    assert got == [_by_name(events, events.parameters(n.event())) for n in batch]
    assert got[0]["to_state"] != got[1]["to_state"]


def _by_name(insert: PreparedInsert, params: Any) -> dict[str, Any]:
    if insert.order is None:
        return _plain(params)
    return _plain(dict(zip(insert.order, params, strict=True)))


def test_the_one_statement_insert_stores_what_sqlalchemy_would(db_url: str) -> None:
    """PostgreSQL's job-and-event statement (psycopg's raw ``$n`` placeholders) stores
    the same rows as SQLAlchemy's own inserts of the same values."""
    if not db_url.startswith("postgresql"):
        pytest.skip("one statement for a job and its event is PostgreSQL's (a CTE)")
    db = Database(db_url)
    upgrade(db)
    now = datetime(2026, 12, 7, 9, 45, tzinfo=UTC)
    spec = JobSpec(
        argv=("python3", "-c", "pass"),
        name="raw",
        parameters={"n": 1, "s": "x"},
        metadata={"team": "a"},
        env={"K": "v"},
        scheduled_at=datetime(2099, 1, 1, tzinfo=UTC),
        max_attempts=3,
        notifications={"webhooks": ["http://h/x"], "on": ["failed"]},
    )
    one = NewJob("t-raw", spec, JobState.SCHEDULED, 12.5, now, "hash", "Job scheduled.")
    core = replace(one, id="core-job")
    try:
        with db.write() as conn:
            conn.execute(tenants.insert().values(id="t-raw", name="t-raw", created_at=now))
        with db.write() as conn:
            job = one.insert(conn)
            row, event = core.row(), core.event()
            conn.execute(jobs.insert().values(row))
            conn.execute(job_events.insert().values(event))
        with db.read() as conn:
            stored = {r.id: r._asdict() for r in conn.execute(sa.select(jobs).order_by(jobs.c.seq))}
            events = {
                r.job_id: r._asdict()
                for r in conn.execute(sa.select(job_events).order_by(job_events.c.seq))
            }
    finally:
        db.dispose()
    assert job.seq == stored[one.id]["seq"]
    mine, theirs = stored[one.id], stored["core-job"]
    assert {k: v for k, v in mine.items() if k not in ("id", "seq")} == {
        k: v for k, v in theirs.items() if k not in ("id", "seq")
    }
    assert mine["parameters"] == {"n": 1, "s": "x"} and mine["env"] == {"K": "v"}
    mine_event, their_event = events[one.id], events["core-job"]
    assert {k: v for k, v in mine_event.items() if k not in ("seq", "job_id")} == {
        k: v for k, v in their_event.items() if k not in ("seq", "job_id")
    }


def test_numbered_placeholders_name_each_column_once() -> None:
    sql = "INSERT INTO t (a, b) VALUES (%(a)s, %(b)s) RETURNING (SELECT %(a)s)"
    assert (
        _numbered(sql, ["a", "b"]) == "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING (SELECT $1)"
    )
    with pytest.raises(ValueError, match="not exactly"):
        _numbered(sql, ["a", "b", "c"])  # a column the statement does not take
    with pytest.raises(ValueError, match="not exactly"):
        _numbered("SELECT '%%' || %(a)s", ["a"])  # a literal percent sign
