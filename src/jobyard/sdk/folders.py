"""SDK methods for folders and their files."""

from __future__ import annotations

from jobyard.sdk.base import BaseClient


class FoldersMixin(BaseClient):
    """Folders and their files."""
