"""Folder rows and the index of their files. Every query is scoped by ``tenant_id``
(except :meth:`FolderStore.get_unscoped`, for the dispatcher)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from jobyard import errors
from jobyard.domain.folders import Folder, FolderFile
from jobyard.domain.jobs import DEFAULT_PROJECT_ID
from jobyard.store.database import Database
from jobyard.store.tables import folder_files, folders


def _folder(row: Mapping[Any, Any]) -> Folder:
    return Folder(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _file(row: Mapping[Any, Any]) -> FolderFile:
    return FolderFile(
        path=row["path"], size=int(row["size"]), sha256=row["sha256"], updated_at=row["updated_at"]
    )


class FolderStore:
    """All SQL about folders and ``folder_files``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- folders -----------------------------------------------------------------
    def create(
        self,
        *,
        tenant_id: str,
        name: str,
        description: str | None,
        now: datetime,
        project_id: str | None = None,
    ) -> Folder:
        """Insert a folder; Conflict when the tenant already has one with this name."""
        folder = Folder(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            name=name,
            description=description,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.db.write() as conn:
                conn.execute(
                    folders.insert().values(
                        **vars(folder), project_id=project_id or DEFAULT_PROJECT_ID
                    )
                )
        except exc.IntegrityError:
            raise errors.Conflict(
                f"a folder named {name!r} already exists", kind="folder", name=name
            ) from None
        return folder

    def find(self, tenant_id: str, ref: str, project_id: str | None = None) -> Folder | None:
        """The tenant's folder whose id is ``ref`` or else whose name is ``ref`` (within
        ``project_id`` when given)."""
        stmt = sa.select(folders).where(
            folders.c.tenant_id == tenant_id, sa.or_(folders.c.id == ref, folders.c.name == ref)
        )
        if project_id is not None:
            stmt = stmt.where(folders.c.project_id == project_id)
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        by_id = [r for r in rows if r["id"] == ref]
        chosen = by_id or rows
        return _folder(chosen[0]) if chosen else None

    def get_unscoped(self, folder_id: str) -> Folder | None:
        """A folder by id across tenants: for the dispatcher, never for API reads."""
        with self.db.read() as conn:
            row = (
                conn.execute(sa.select(folders).where(folders.c.id == folder_id)).mappings().first()
            )
        return _folder(row) if row else None

    def list_folders(self, tenant_id: str, project_id: str | None = None) -> list[Folder]:
        """The tenant's folders by name (of ``project_id`` when given)."""
        stmt = sa.select(folders).where(folders.c.tenant_id == tenant_id).order_by(folders.c.name)
        if project_id is not None:
            stmt = stmt.where(folders.c.project_id == project_id)
        with self.db.read() as conn:
            return [_folder(r) for r in conn.execute(stmt).mappings().all()]

    def stats(self, tenant_id: str, folder_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``{folder_id: (file_count, total_bytes)}``; folders without files are absent."""
        ids = sorted(set(folder_ids))
        if not ids:
            return {}
        stmt = (
            sa.select(
                folder_files.c.folder_id,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(folder_files.c.size), 0),
            )
            .where(folder_files.c.tenant_id == tenant_id, folder_files.c.folder_id.in_(ids))
            .group_by(folder_files.c.folder_id)
        )
        with self.db.read() as conn:
            return {fid: (int(n), int(total)) for fid, n, total in conn.execute(stmt).all()}

    def total_bytes(self, tenant_id: str, folder_id: str) -> int:
        return self.stats(tenant_id, [folder_id]).get(folder_id, (0, 0))[1]

    def delete(self, tenant_id: str, folder_id: str) -> bool:
        """Delete the folder and its file rows; False when there was no such folder."""
        with self.db.write() as conn:
            conn.execute(
                folder_files.delete().where(
                    folder_files.c.tenant_id == tenant_id, folder_files.c.folder_id == folder_id
                )
            )
            result = conn.execute(
                folders.delete().where(folders.c.tenant_id == tenant_id, folders.c.id == folder_id)
            )
        return bool(result.rowcount)

    # ---- files -------------------------------------------------------------------
    def upsert_file(self, tenant_id: str, folder_id: str, file: FolderFile) -> FolderFile:
        """Insert or replace the index row of ``file.path`` and touch the folder;
        NotFound when the folder is gone (e.g. deleted during the upload)."""
        try:
            self._upsert(tenant_id, folder_id, file)
        except exc.IntegrityError:
            # a concurrent upload of the same path inserted first: this time it updates
            self._upsert(tenant_id, folder_id, file)
        return file

    def _upsert(self, tenant_id: str, folder_id: str, file: FolderFile) -> None:
        key = (
            folder_files.c.tenant_id == tenant_id,
            folder_files.c.folder_id == folder_id,
            folder_files.c.path == file.path,
        )
        values = {"size": file.size, "sha256": file.sha256, "updated_at": file.updated_at}
        with self.db.write() as conn:
            if not self._touch(conn, tenant_id, folder_id, file.updated_at):
                raise errors.NotFound(
                    f"folder {folder_id} does not exist", kind="folder", id=folder_id
                )
            if not conn.execute(folder_files.update().where(*key).values(**values)).rowcount:
                conn.execute(
                    folder_files.insert().values(
                        folder_id=folder_id, path=file.path, tenant_id=tenant_id, **values
                    )
                )

    def list_files(self, tenant_id: str, folder_id: str) -> list[FolderFile]:
        """The folder's files by path."""
        stmt = (
            sa.select(folder_files)
            .where(folder_files.c.tenant_id == tenant_id, folder_files.c.folder_id == folder_id)
            .order_by(folder_files.c.path)
        )
        with self.db.read() as conn:
            return [_file(r) for r in conn.execute(stmt).mappings().all()]

    def get_file(self, tenant_id: str, folder_id: str, path: str) -> FolderFile | None:
        stmt = sa.select(folder_files).where(
            folder_files.c.tenant_id == tenant_id,
            folder_files.c.folder_id == folder_id,
            folder_files.c.path == path,
        )
        with self.db.read() as conn:
            row = conn.execute(stmt).mappings().first()
        return _file(row) if row else None

    def conflicting_paths(self, tenant_id: str, folder_id: str, path: str) -> list[str]:
        """Indexed paths that cannot coexist with a file at ``path``: a file where one of
        its parent directories would be, or files below ``path`` (``path`` is a directory)."""
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        below = path + "/"
        stmt = sa.select(folder_files.c.path).where(
            folder_files.c.tenant_id == tenant_id,
            folder_files.c.folder_id == folder_id,
            sa.or_(
                folder_files.c.path.in_(parents) if parents else sa.false(),
                # substr, not LIKE: no wildcards to escape, case-sensitive on SQLite too
                sa.func.substr(folder_files.c.path, 1, len(below)) == below,
            ),
        )
        with self.db.read() as conn:
            return sorted(conn.execute(stmt).scalars().all())

    def delete_file(self, tenant_id: str, folder_id: str, path: str, now: datetime) -> bool:
        """Delete one index row; False when there was none."""
        with self.db.write() as conn:
            result = conn.execute(
                folder_files.delete().where(
                    folder_files.c.tenant_id == tenant_id,
                    folder_files.c.folder_id == folder_id,
                    folder_files.c.path == path,
                )
            )
            if result.rowcount:
                self._touch(conn, tenant_id, folder_id, now)
        return bool(result.rowcount)

    @staticmethod
    def _touch(conn: sa.Connection, tenant_id: str, folder_id: str, now: datetime) -> bool:
        result = conn.execute(
            folders.update()
            .where(folders.c.tenant_id == tenant_id, folders.c.id == folder_id)
            .values(updated_at=now)
        )
        return bool(result.rowcount)
