"""Folder use cases: create, list, delete; upload, list and download files."""

from __future__ import annotations

from jobyard.clock import Clock
from jobyard.storage.fs import Storage
from jobyard.store.folders import FolderStore
from jobyard.store.jobs import JobStore


class FolderService:
    def __init__(
        self,
        *,
        store: FolderStore,
        storage: Storage,
        jobs: JobStore,
        clock: Clock,
        max_upload_bytes: int,
    ) -> None:
        self.store = store
        self.storage = storage
        self.jobs = jobs
        self.clock = clock
        self.max_upload_bytes = max_upload_bytes
