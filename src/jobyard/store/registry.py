"""Models, model versions and environment configurations."""

from __future__ import annotations

from jobyard.store.database import Database


class RegistryStore:
    def __init__(self, db: Database) -> None:
        self.db = db
