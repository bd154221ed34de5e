"""Wire models of folders and their files."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from jobyard.api.schemas.base import Strict
from jobyard.domain.folders import FolderFile
from jobyard.service.folders import FolderSummary


# ---- wire models -------------------------------------------------------------------
class FolderCreate(Strict):
    name: str = Field(
        description="1-200 characters: letters, digits, '.', '_', '-'; unique in the tenant."
    )
    description: str | None = Field(None, max_length=10_000)


class FolderOut(BaseModel):
    id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    file_count: int
    total_bytes: int

    @classmethod
    def of(cls, s: FolderSummary) -> FolderOut:
        f = s.folder
        return cls(
            id=f.id,
            name=f.name,
            description=f.description,
            created_at=f.created_at,
            updated_at=f.updated_at,
            file_count=s.file_count,
            total_bytes=s.total_bytes,
        )


class FolderList(BaseModel):
    items: list[FolderOut]


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str
    updated_at: datetime

    @classmethod
    def of(cls, f: FolderFile) -> FileOut:
        return cls(path=f.path, size=f.size, sha256=f.sha256, updated_at=f.updated_at)


class FileItems(BaseModel):
    items: list[FileOut]


class FileList(FileItems):
    total_bytes: int
