"""SQLite's WAL checkpoints run on a thread of their own, beside the commits: the WAL is
copied back and starts over, so it stays bounded, and nothing committed is lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobyard.store.checkpoints import BACKSTOP_FRAMES, CHECKPOINT_FRAMES
from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.store.tables import tenants

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'jobyard.db'}")
    upgrade(database)
    yield database
    database.dispose()


def _add(db: Database, n: int) -> None:
    with db.write() as conn:
        conn.execute(tenants.insert().values(id=f"t{n}", name="x" * 150, created_at=NOW))


def test_the_wal_is_copied_back_beside_the_commits_and_starts_over(
    db: Database, tmp_path: Path
) -> None:
    checkpoints = db.checkpoints
    assert checkpoints is not None
    written = longest = last = n = 0
    while written < 5 * CHECKPOINT_FRAMES:  # with SQLite's backstop alone: one WAL
        _add(db, n)
        n += 1
        frames = checkpoints.wal_frames()
        assert frames is not None
        written += frames - last if frames >= last else frames  # it started over
        last, longest = frames, max(longest, frames)
    assert checkpoints.wait_idle(30)
    assert checkpoints.completed >= 1
    assert longest < 3 * CHECKPOINT_FRAMES
    db.dispose()
    again = Database(f"sqlite:///{tmp_path / 'jobyard.db'}")
    try:
        with again.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(tenants)).scalar() == n
    finally:
        again.dispose()


def test_the_commits_leave_checkpoints_to_the_thread(db: Database) -> None:
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_FRAMES
    _add(db, 0)
    checkpoints = db.checkpoints
    assert checkpoints is not None
    assert checkpoints.wal_frames() is not None  # the WAL-index is mapped after a commit
