"""Folders: named places to exchange data with jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Folder:
    id: str
    tenant_id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class FolderFile:
    path: str  #: relative, ``/``-separated, never ``..`` or absolute
    size: int
    sha256: str
    updated_at: datetime
