"""Registry use cases: models, immutable versions with artifacts, environments."""

from __future__ import annotations

from jobyard.clock import Clock
from jobyard.storage.blobs import BlobStore
from jobyard.store.jobs import JobStore
from jobyard.store.registry import RegistryStore


class RegistryService:
    def __init__(
        self,
        *,
        store: RegistryStore,
        blobs: BlobStore,
        jobs: JobStore,
        clock: Clock,
        max_upload_bytes: int,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.jobs = jobs
        self.clock = clock
        self.max_upload_bytes = max_upload_bytes
