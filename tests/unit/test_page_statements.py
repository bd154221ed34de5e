"""The list page's statements built once per shape (``store/page_statements.py``) are
the SQL, with the same parameter values in the same places, that ``JobStore`` builds for
the same filter, on SQLite and on PostgreSQL (psycopg): so are their plans."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.engine import Dialect

from jobyard.domain.jobs import JobFilter
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.store import page_statements
from jobyard.store.jobs import JobStore, encode_cursor

#: a bound parameter as each dialect writes it (a PostgreSQL cast ``::TYPE`` stays)
_PARAM = re.compile(r"%\((\w+)\)s|__\[POSTCOMPILE_(\w+)\]|\?")


def _compiled(statement: tuple[Any, dict[str, Any]], dialect: Dialect) -> tuple[str, list[Any]]:
    """The SQL with its parameters as placeholders, and their values in order."""
    stmt, params = statement
    compiled = stmt.compile(dialect=dialect)
    values = {**compiled.params, **params}
    sql = str(compiled)
    if compiled.positiontup is not None and "?" in sql:  # SQLite: positional
        names = list(compiled.positiontup)
    else:
        names = [a or b for a, b in _PARAM.findall(sql)]
    return _PARAM.sub("?", sql), [values[n] for n in names]


def test_the_statements_built_once_are_the_ones_built_per_page() -> None:
    store = JobStore.__new__(JobStore)  # the statements need no database
    conn = mock.Mock(spec=[])  # nor a connection (only a time range's page reads one)
    shapes = itertools.product(
        [None, "p1"],
        [frozenset(), frozenset({JobState.SUCCEEDED, JobState.FAILED})],
        [frozenset(), frozenset({Priority.HIGH})],
        [None, "etl"],
        [None, "alice", ""],
        [None, encode_cursor(42)],
    )
    compared = 0
    for project, states, priorities, job_type, submitted_by, cursor in shapes:
        flt = JobFilter(
            states=states,
            priorities=priorities,
            job_type=job_type,
            submitted_by=submitted_by,
            project_id=project,
        )
        once = [store._list_stmt(conn, "t", flt, 7, cursor), store._count_stmt("t", flt)]
        with (
            mock.patch.object(page_statements, "list_statement", return_value=None),
            mock.patch.object(page_statements, "count_statement", return_value=None),
        ):
            per_page = [store._list_stmt(conn, "t", flt, 7, cursor), store._count_stmt("t", flt)]
        assert all(params == {} for _, params in per_page)
        for dialect in (sqlite.dialect(), psycopg.dialect()):
            for a, b in zip(once, per_page, strict=True):
                assert _compiled(a, dialect) == _compiled(b, dialect), (flt, cursor)
                compared += 1
    assert compared == 2 * 2 * 96


def test_uncommon_filters_are_built_per_page() -> None:
    """A time range, model versions, a name, an id prefix, an empty job type: None."""
    for flt in (
        JobFilter(created_from=datetime(2026, 1, 1, tzinfo=UTC)),
        JobFilter(id_prefix="ab"),
        JobFilter(name_contains="x"),
        JobFilter(model_version_ids=frozenset({"m"})),
        JobFilter(job_type=""),
    ):
        assert page_statements.list_statement("t", flt, 1, None) is None
        assert page_statements.count_statement("t", flt) is None
