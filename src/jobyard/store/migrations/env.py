"""Alembic environment: runs on the connection jobyard hands over."""

from __future__ import annotations

from alembic import context

from jobyard.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via jobyard.store.migrate
    raise RuntimeError("run migrations through jobyard.store.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
