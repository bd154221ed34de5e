"""A prepared insert hands the driver what SQLAlchemy's own bind processors make of each
value, including the values it works out once (None, a JSON column's ``{}``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from jobyard.store.prepared import PreparedInsert
from jobyard.store.tables import jobs


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
