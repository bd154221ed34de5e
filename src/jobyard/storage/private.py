"""The data directory and database are the server's alone (``0700`` / ``0600``): no
other user of the host, and no job, may read keys, logs or other tenants' files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create ``path`` if needed and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # not ours: the operator chose its mode
        os.chmod(path, 0o700)


def protect_file(path: Path | None) -> None:
    """Make a database file (and SQLite's ``-wal``/``-shm`` beside it) owner-only."""
    if path is None:
        return
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(candidate, 0o600)
