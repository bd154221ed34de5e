"""Bring a database to the newest schema (Alembic, programmatically).

A start almost always finds the schema at head. That check reads ``alembic_version`` and
the revision ids of the migration files without importing Alembic, which a server would
otherwise keep in memory for nothing (≈ 10 MB); Alembic loads only to upgrade, and
``upgrade(..., isolated=True)`` upgrades in a forked child so that even a first start
leaves the server without it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from jobyard.store.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
#: Alembic's default version table (``env.py`` keeps it)
VERSION_TABLE = "alembic_version"

_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    """The head revision id, read from the migration files without Alembic; None when
    they do not name exactly one head (a branch, or syntax this reader does not know)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        text = path.read_text("utf-8")
        values = {m.group(1): m.group(2) for m in _ASSIGNMENT.finditer(text)}
        if "revision" not in values:
            continue  # not a migration (__init__.py)
        revision = _QUOTED.fullmatch(values["revision"].strip())
        if revision is None or "down_revision" not in values:
            return None
        revisions.add(revision.group(1))
        parents.update(_QUOTED.findall(values["down_revision"]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def alembic_head_revision() -> str | None:
    """The head revision as Alembic computes it (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The database's revision from ``alembic_version``; None when it has none (or several
    heads)."""
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        version = sa.column("version_num", sa.String)
        rows = conn.execute(sa.select(version).select_from(sa.table(VERSION_TABLE))).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def at_head(db: Database) -> bool:
    """True when the database is at the head revision (checked without Alembic)."""
    head = head_revision()
    return head is not None and current_revision(db) == head


def upgrade(db: Database, revision: str = "head", *, isolated: bool = False) -> None:
    """Apply all migrations up to ``revision``; nothing to do (and no Alembic import) when
    the database is already at head. ``isolated`` runs Alembic in a forked child when that
    is safe (POSIX, one thread, a database file or server), so this process never loads it."""
    if revision == "head" and at_head(db):
        return
    if isolated and _can_fork(db):
        _upgrade_in_child(db, revision)
    else:
        _upgrade(db, revision)


def _upgrade(db: Database, revision: str) -> None:
    from alembic import command

    cfg = _config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _can_fork(db: Database) -> bool:
    in_memory = db.engine.url.get_backend_name() == "sqlite" and db.engine.url.database in (
        None,
        "",
        ":memory:",
    )
    return hasattr(os, "fork") and threading.active_count() == 1 and not in_memory


def _upgrade_in_child(db: Database, revision: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: fresh connections, never the parent's pooled ones
        code = 1
        try:
            db.engine.dispose(close=False)
            _upgrade(db, revision)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"the database migration failed (exit status {code}; see above)")
