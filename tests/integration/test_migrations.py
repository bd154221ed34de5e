"""The schema exists only through migrations, and they match the tables module."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.tables import metadata


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


def test_sqlite_pragmas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with db.read() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        db.dispose()
