"""Registry use cases: models, immutable versions with artifacts, environments.

:class:`RegistryService` is one facade over :mod:`jobyard.service.models` (models and
versions) and :mod:`jobyard.service.environments`.
"""

from __future__ import annotations

from jobyard.clock import Clock
from jobyard.service.environments import EnvironmentSpec, EnvironmentUseCases
from jobyard.service.model_specs import ArtifactUpload, VersionSpec
from jobyard.service.models import ModelUseCases
from jobyard.storage.blobs import BlobStore
from jobyard.store.jobs import JobStore
from jobyard.store.registry import RegistryStore

__all__ = ["ArtifactUpload", "EnvironmentSpec", "RegistryService", "VersionSpec"]


class RegistryService(ModelUseCases, EnvironmentUseCases):
    """Models, model versions (``resolve``, ``check_parameters``) and environments."""

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
