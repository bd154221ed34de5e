"""SDK methods for models, model versions and environments."""

from __future__ import annotations

from jobyard.sdk.base import BaseClient


class RegistryMixin(BaseClient):
    """Models, model versions and environments."""
