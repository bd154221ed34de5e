"""The server keeps out of memory what it does not use: Alembic when the schema is at
head (and, through a forked child, even when it migrates), the CLI's client commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobyard.store import migrate
from jobyard.store.database import Database

START = """
import json, sys
from pathlib import Path
from jobyard.api.app import create_app
from jobyard.server import start_services
from jobyard.settings import Settings
from jobyard.store import migrate

services, key = start_services(Settings.from_env(data_dir=Path(sys.argv[1]), slots=1))
try:
    create_app(services)
    print(json.dumps({
        "alembic": sorted(m for m in sys.modules if m.split(".")[0] == "alembic"),
        "revision": migrate.current_revision(services.db),
        "new_key": key is not None,
    }))
finally:
    services.close()
"""

BROKEN = """
import json, sys
from jobyard.store import migrate
from jobyard.store.database import Database

db = Database(sys.argv[1])
try:
    migrate.upgrade(db, isolated=True)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"error": error, "alembic": "alembic" in sys.modules}))
"""

SERVE_COMMAND = """
import json, sys
from jobyard.cli.main import build_app
build_app(client_commands=False)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("httpx", "rich", "alembic")
                        or m.startswith("jobyard.cli.")
                        and m not in ("jobyard.cli.main", "jobyard.cli.helptext", "jobyard.cli.serve"))))
"""


def _run(code: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_head_revision_without_alembic_is_alembics_head() -> None:
    assert migrate.head_revision() is not None
    assert migrate.head_revision() == migrate.alembic_head_revision()


def test_head_revision_is_unknown_with_two_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, parent in [("a", None), ("b", "a"), ("c", "a")]:
        down = repr(parent)
        (tmp_path / f"{name}.py").write_text(f'revision: str = "{name}"\ndown_revision = {down}\n')
    monkeypatch.setattr(migrate, "VERSIONS_DIR", tmp_path)
    assert migrate.head_revision() is None  # then upgrade() asks Alembic
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    assert migrate.head_revision() == "d"


def test_server_never_imports_alembic(tmp_path: Path) -> None:
    first = _run(START, str(tmp_path))  # a fresh database: migrated in a forked child
    assert first == {"alembic": [], "revision": migrate.head_revision(), "new_key": True}
    again = _run(START, str(tmp_path))  # already at head: nothing to migrate
    assert again == {"alembic": [], "revision": migrate.head_revision(), "new_key": False}


def test_a_failed_migration_in_the_child_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    db = Database(url)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:  # a revision this code does not know
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'unknown'"))
    finally:
        db.dispose()
    result = _run(BROKEN, url)
    assert result == {"error": result["error"], "alembic": False}
    assert str(result["error"]).startswith("RuntimeError: the database migration failed")


def test_serve_command_leaves_out_the_client_commands() -> None:
    assert _run(SERVE_COMMAND) == []
