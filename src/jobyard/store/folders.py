"""Folder rows and the index of their files."""

from __future__ import annotations

from jobyard.store.database import Database


class FolderStore:
    def __init__(self, db: Database) -> None:
        self.db = db
