"""SQLite's WAL checkpoints run on a thread of their own, not in the group's commits
(which every submit's is)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobyard.store import checkpoints
from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.store.tables import tenants

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _add(tenant_id: str) -> Callable[[sa.Connection], None]:
    def work(conn: sa.Connection) -> None:
        conn.execute(tenants.insert().values(id=tenant_id, name=tenant_id, created_at=NOW))

    return work


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        time.sleep(0.01)


def test_the_group_commit_leaves_checkpoints_to_their_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    upgrade(db)
    try:
        db.group.run(_add("first"))
        conn = db._group_conns[0]
        assert conn is not None
        driver = conn.connection.driver_connection
        assert driver is not None
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        with db.read() as other:  # the other connections keep SQLite's own checkpoints
            assert other.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        checkpointer = db._checkpointer
        assert checkpointer is not None
        assert checkpointer.checkpoints == 0
        for i in range(checkpoints.ROWS_PER_CHECKPOINT):
            db.group.run(_add(f"t{i}"))
        _wait_for(lambda: checkpointer.checkpoints >= 1)
        with db.read() as other:
            count = other.execute(sa.select(sa.func.count()).select_from(tenants)).scalar()
        assert count == 1 + checkpoints.ROWS_PER_CHECKPOINT
    finally:
        db.dispose()


def test_postgresql_has_no_checkpointer(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the checkpointer is SQLite's; this case is PostgreSQL's")
    db = Database(db_url)
    try:
        assert db._checkpointer is None
    finally:
        db.dispose()
