"""The schema exists only through migrations, and they match the tables module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.schema import CreateIndex

from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.registry import RegistryStore
from jobyard.store.tables import environments, metadata, tenants
from tests.conftest import PG_URL, REQUIRE_PG, _pg_reason


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of its own without any schema: a SQLite file, or a new PostgreSQL
    database (the session's one is migrated already)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'old.db'}")
        yield db
        db.dispose()
        return
    reason = _pg_reason()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"jobyard_migration_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = Database(PG_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migrations_match_tables(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate.upgrade(db)  # idempotent on an already migrated database
        assert migrate.current_revision(db) == migrate.head_revision()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
    finally:
        db.dispose()


def test_partial_indexes_keep_their_condition(db_url: str) -> None:
    """The tables give PostgreSQL's ``WHERE`` of a partial index only once an engine on
    PostgreSQL exists (a server on SQLite never loads that dialect): with the database's
    own dialect, every partial index still renders with its condition."""
    db = Database(db_url)
    try:
        partial = [
            index
            for table in metadata.tables.values()
            for index in table.indexes
            if index.dialect_options["sqlite"]["where"] is not None
        ]
        assert len(partial) >= 10
        for index in partial:
            ddl = str(CreateIndex(index).compile(dialect=db.engine.dialect))
            condition = str(index.dialect_options["sqlite"]["where"])
            assert ddl.endswith(f" WHERE {condition}"), ddl
    finally:
        db.dispose()


def test_sqlite_pragmas(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with db.read() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(sa.text("PRAGMA temp_store")).scalar() == 2  # MEMORY
    finally:
        db.dispose()


def test_0009_gives_existing_environments_the_full_network(blank_db: Database) -> None:
    """An environment made before 0009 keeps its fields and gets ``network`` "full" (what
    its jobs had); the downgrade drops the column and keeps the row."""
    migrate.upgrade(blank_db, "0008")
    now = datetime.now(UTC)
    with blank_db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
        conn.execute(
            environments.insert().values(
                id="env-1",
                tenant_id="t",
                name="py-small",
                env_vars={"REGION": "eu"},
                pip_requirements=["pandas==2.*"],
                files={},
                cpu_slots=2,
                memory_limit_mb=512,
                max_concurrent_jobs=3,
                created_at=now,
                updated_at=now,
            )
        )
    migrate.upgrade(blank_db)
    env = RegistryStore(blank_db).find_environment("t", "py-small")
    assert env is not None
    assert (env.id, env.env_vars, env.pip_requirements, env.cpu_slots) == (
        "env-1",
        {"REGION": "eu"},
        ("pandas==2.*",),
        2,
    )
    assert (env.memory_limit_mb, env.max_concurrent_jobs, env.network) == (512, 3, "full")
    with blank_db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT name, network FROM environments")).all()
    assert [tuple(r) for r in stored] == [("py-small", "full")]

    cfg = migrate._config()
    with blank_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    assert migrate.current_revision(blank_db) == "0008"
    with blank_db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("environments")}
        names = conn.execute(sa.text("SELECT name FROM environments")).scalars().all()
    assert "network" not in columns and "max_concurrent_jobs" in columns
    assert names == ["py-small"]
