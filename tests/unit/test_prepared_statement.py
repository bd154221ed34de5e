"""A prepared statement's parameters, worked out by a function compiled once, are what
SQLAlchemy's ``construct_params`` and the bind processors make of the same values: for
each of the claim loop's statements, on both dialects, including a statement's own
values given by the caller and a value missing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from jobyard.store import claims, fairshare
from jobyard.store.prepared import PreparedStatement

DIALECTS = {"sqlite": sqlite.dialect(), "pg": postgresql.psycopg.dialect()}
COMMON = {
    "claim": claims._CLAIM,
    "running": claims._RUNNING,
    "end": claims._END,
    "end_with_usage": claims._END_WITH_USAGE,
    "marked_end": claims._MARKED_END,
    "marked_end_with_usage": claims._MARKED_END_WITH_USAGE,
}
#: (statement, dialect) as ClaimStore and FairShareStore prepare them
STATEMENTS = {
    **{f"{name}-{d}": (stmt, d) for name, stmt in COMMON.items() for d in DIALECTS},
    "candidates-sqlite": (claims._CANDIDATES_SQLITE, "sqlite"),
    "candidates-pg": (claims._CANDIDATES, "pg"),
    "tenant_head-sqlite": (claims._TENANT_HEAD_SQLITE, "sqlite"),
    "tenant_head-pg": (claims._TENANT_HEAD, "pg"),
    "fair_share-sqlite": (fairshare._upsert("sqlite"), "sqlite"),
    "fair_share-pg": (fairshare._upsert("postgresql"), "pg"),
}
NOW = datetime(2026, 12, 7, 20, 15, 1, 123456, tzinfo=UTC)


def _value(bind: sa.BindParameter[Any], i: int) -> object:
    """A value of the parameter's type (a different one per parameter)."""
    kind = getattr(bind.type, "impl", bind.type)
    if isinstance(kind, sa.DateTime):
        return NOW
    if isinstance(kind, sa.Integer):
        return 3 + i
    if isinstance(kind, sa.Float):
        return 1.5 + i
    return f"v{i}"


def _given(stmt: PreparedStatement) -> dict[str, object]:
    """A value for each parameter the statement needs from its caller."""
    binds = stmt._compiled.bind_names
    return {b.key: _value(b, i) for i, b in enumerate(binds) if b.required}


@pytest.mark.parametrize("name", STATEMENTS)
def test_the_compiled_parameters_are_sqlalchemys(name: str) -> None:
    statement, dialect_name = STATEMENTS[name]
    dialect = DIALECTS[dialect_name]
    stmt = PreparedStatement(statement, dialect)
    assert stmt._fast is not None  # compiled, not SQLAlchemy's every call
    params = _given(stmt)

    made = stmt.parameters(params)
    assert made == stmt.constructed_parameters(params)
    assert type(made) is (tuple if dialect.positional else dict)


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_a_statements_own_value_given_by_the_caller_is_the_callers(dialect: Dialect) -> None:
    stmt = PreparedStatement(claims._CLAIM, dialect)
    params = _given(stmt)
    own = next(b for b in stmt._compiled.bind_names if not b.required and b.value == "queued")
    for key in (own.key, stmt._compiled.bind_names[own]):
        made = stmt.parameters({**params, key: "scheduled"})
        assert made == stmt.constructed_parameters({**params, key: "scheduled"})
        values = made if isinstance(made, tuple) else tuple(made.values())
        assert "scheduled" in values and "queued" not in values


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_a_missing_value_is_sqlalchemys_error(dialect: Dialect) -> None:
    stmt = PreparedStatement(claims._RUNNING, dialect)
    params = _given(stmt)
    del params["b_pid"]
    with pytest.raises(exc.InvalidRequestError, match="b_pid"):
        stmt.parameters(params)
