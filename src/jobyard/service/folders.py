"""Folder use cases: create, list, delete; upload, list and download files; and, for the
dispatcher, copying a folder into a job's directory and a job's output back.

Files live on storage at ``folders/<tenant_id>/<folder_id>/<path>``; the ``folder_files``
index (path, size, sha256) is the authority on what a folder holds."""

from __future__ import annotations

import builtins
import logging
import os
import posixpath
import re
import stat
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain.auth import Principal
from jobyard.domain.folders import Folder, FolderFile
from jobyard.storage.fs import CHUNK, Storage, safe_relpath
from jobyard.store.folders import FolderStore
from jobyard.store.jobs import JobStore

log = logging.getLogger("jobyard.folders")

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 200
MAX_DESCRIPTION = 10_000
INCOMING = "folders-incoming"  #: staging area of uploads, outside every folder

#: ``on_skip(path, reason)``: told about each entry :meth:`FolderService.ingest` leaves out
SkipHook = Callable[[str, str], None]


@dataclass(frozen=True)
class FolderSummary:
    """A folder with the count and total size of its files."""

    folder: Folder
    file_count: int
    total_bytes: int


def validate_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME or not NAME_RE.fullmatch(name):
        raise errors.InvalidInput(
            f"name {name!r} is not valid: 1 to {MAX_NAME} characters, letters, digits, "
            "'.', '_' and '-', starting with a letter or digit",
            field="name",
        )
    return name


def join_prefix(prefix: str | None, name: str) -> str:
    """``prefix/name`` as a safe relative path (InvalidInput naming ``path`` otherwise)."""
    if prefix:
        safe_relpath(prefix, field="prefix")
        name = f"{prefix.rstrip('/')}/{name}"
    return safe_relpath(name)


def _clashes(paths: Sequence[str]) -> list[str]:
    """Paths in one batch that repeat or that are a parent directory of another."""
    seen = set(paths)
    bad = {p for p, n in Counter(paths).items() if n > 1}
    for p in paths:
        parts = p.split("/")
        bad.update("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in seen)
    return sorted(bad)


def _read(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


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
        #: checks a tenant's storage quota before a file is kept (set by the wiring)
        self.storage_quota: Callable[[str, int], None] = lambda _tenant, _size: None

    # ---- folders -----------------------------------------------------------------
    def create(self, principal: Principal, name: str, description: str | None = None) -> Folder:
        validate_name(name)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise errors.InvalidInput(
                f"description must be at most {MAX_DESCRIPTION} characters", field="description"
            )
        return self.store.create(
            tenant_id=principal.tenant_id,
            name=name,
            description=description,
            now=self.clock.now(),
            project_id=principal.project_id,
        )

    def get(self, principal: Principal, ref: str) -> Folder:
        """The caller's folder with the id or name ``ref``, or NotFound."""
        folder = self.store.find(principal.tenant_id, ref, principal.project_id)
        if folder is None:
            raise errors.NotFound(f"folder {ref!r} does not exist", kind="folder", ref=ref)
        return folder

    def describe(self, principal: Principal, ref: str) -> FolderSummary:
        return self._summaries(principal, [self.get(principal, ref)])[0]

    def list(self, principal: Principal) -> builtins.list[FolderSummary]:
        """The caller's folders by name."""
        return self._summaries(
            principal, self.store.list_folders(principal.tenant_id, principal.project_id)
        )

    def _summaries(
        self, principal: Principal, folders: builtins.list[Folder]
    ) -> builtins.list[FolderSummary]:
        stats = self.store.stats(principal.tenant_id, (f.id for f in folders))
        return [FolderSummary(f, *stats.get(f.id, (0, 0))) for f in folders]

    def delete(self, principal: Principal, ref: str) -> None:
        """Delete the folder and its files; Conflict while unfinished jobs use it."""
        folder = self.get(principal, ref)
        n = self.jobs.count_unfinished_using(principal.tenant_id, folder_id=folder.id)
        if n:
            raise errors.Conflict(
                f"folder {folder.name!r} is used by {n} unfinished job{'s' if n != 1 else ''}; "
                "delete it when they have ended",
                kind="folder",
                id=folder.id,
                unfinished_jobs=n,
            )
        self.store.delete(principal.tenant_id, folder.id)
        self.storage.delete_tree(self._prefix(folder))

    def get_unscoped(self, folder_id: str) -> Folder | None:
        """A folder by id across tenants, for the dispatcher."""
        return self.store.get_unscoped(folder_id)

    # ---- files -------------------------------------------------------------------
    def files(self, principal: Principal, ref: str) -> builtins.list[FolderFile]:
        folder = self.get(principal, ref)
        return self.store.list_files(folder.tenant_id, folder.id)

    def upload(
        self, principal: Principal, ref: str, path: str, chunks: Iterable[bytes]
    ) -> FolderFile:
        """Store ``chunks`` as the file ``path`` (replacing it); the folder and the path
        are checked before the first chunk is read."""
        return self.upload_many(principal, ref, [(path, chunks)])[0]

    def upload_many(
        self,
        principal: Principal,
        ref: str,
        uploads: Sequence[tuple[str, Iterable[bytes]]],
        prefix: str | None = None,
    ) -> builtins.list[FolderFile]:
        """Several files at once (``prefix/name`` each); every path is checked first."""
        folder = self.get(principal, ref)
        if not uploads:
            raise errors.InvalidInput("no file was sent", field="files")
        paths = [join_prefix(prefix, name) for name, _ in uploads]
        clashes = _clashes(paths)
        if clashes:
            raise errors.InvalidInput(
                f"path {clashes[0]!r} appears twice or is also a directory", field="path"
            )
        for path in paths:
            taken = self.store.conflicting_paths(folder.tenant_id, folder.id, path)
            if taken:
                raise errors.InvalidInput(
                    f"path {path!r} conflicts with {taken[0]!r} (a file cannot also be a "
                    "directory)",
                    field="path",
                    conflicts=taken[:10],
                )
        return [
            self._put(folder, path, chunks, max_bytes=self.max_upload_bytes)
            for path, (_, chunks) in zip(paths, uploads, strict=True)
        ]

    def open_file(
        self, principal: Principal, ref: str, path: str
    ) -> tuple[FolderFile, Iterator[bytes]]:
        """The file's index entry and its content (opened now, read lazily)."""
        folder = self.get(principal, ref)
        rel = safe_relpath(path)
        file = self.store.get_file(folder.tenant_id, folder.id, rel)
        try:
            if file is None:
                raise FileNotFoundError(rel)
            handle = self.storage.open_read(self._key(folder, rel))
        except FileNotFoundError:
            raise errors.NotFound(
                f"folder {folder.name!r} has no file {rel!r}", kind="file", path=rel
            ) from None
        return file, _read(handle)

    def delete_file(self, principal: Principal, ref: str, path: str) -> None:
        folder = self.get(principal, ref)
        rel = safe_relpath(path)
        if not self.store.delete_file(folder.tenant_id, folder.id, rel, self.clock.now()):
            raise errors.NotFound(
                f"folder {folder.name!r} has no file {rel!r}", kind="file", path=rel
            )
        self._remove(folder, rel)

    # ---- dispatcher ----------------------------------------------------------------
    def materialize(self, folder: Folder, dest: Path) -> int:
        """Download every indexed file of ``folder`` into ``dest/<path>``; total bytes."""
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        for file in self.store.list_files(folder.tenant_id, folder.id):
            rel = safe_relpath(file.path)  # the index holds safe paths; checked again
            self.storage.download(self._key(folder, rel), dest.joinpath(*rel.split("/")))
            total += file.size
        return total

    def ingest(
        self, folder: Folder, src: Path, *, on_skip: SkipHook | None = None
    ) -> builtins.list[FolderFile]:
        """Upload the regular files under ``src`` into ``folder`` (same relative paths,
        replacing what is there). Symbolic links are never followed: links, devices,
        fifos, sockets and anything that resolves outside ``src`` are skipped and
        reported to ``on_skip(path, reason)``."""

        def skip(path: str, reason: str) -> None:
            log.warning("folder %s: not ingesting %r: %s", folder.id, path, reason)
            if on_skip is not None:
                on_skip(path, reason)

        if os.path.islink(src):  # a job may swap its output directory for a link
            skip(".", "the output directory is a symbolic link")
            return []
        root = os.path.realpath(src)
        if not os.path.isdir(root):
            return []
        out: builtins.list[FolderFile] = []

        def walk_error(err: OSError) -> None:
            skip(os.path.relpath(err.filename or root, root), f"cannot read: {err.strerror}")

        for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error, followlinks=False):
            dirnames.sort()
            for name in list(dirnames):
                if os.path.islink(os.path.join(dirpath, name)):  # walk lists but never enters
                    skip(_rel(root, dirpath, name), "symbolic link")
                    dirnames.remove(name)
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = _rel(root, dirpath, name)
                try:
                    out.append(self._ingest_file(folder, root, full, rel))
                except _Skip as e:
                    skip(rel, str(e))
        return out

    def _ingest_file(self, folder: Folder, root: str, full: str, rel: str) -> FolderFile:
        try:
            path = safe_relpath(rel)
        except errors.InvalidInput as e:
            raise _Skip(e.message) from None
        try:
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise _Skip("symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file")
            if os.path.commonpath([root, os.path.realpath(full)]) != root:
                raise _Skip("resolves outside the output directory")
            # O_NOFOLLOW: a link swapped in after lstat is refused, not followed;
            # O_NONBLOCK: a fifo swapped in does not block the open
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            raise _Skip(f"cannot open: {e.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Skip("not a regular file")
            for old in self.store.conflicting_paths(folder.tenant_id, folder.id, path):
                self.store.delete_file(folder.tenant_id, folder.id, old, self.clock.now())
                self._remove(folder, old)
            chunks = iter(lambda: handle.read(CHUNK), b"")
            return self._put(folder, path, chunks, max_bytes=None)

    # ---- storage -------------------------------------------------------------------
    @staticmethod
    def _prefix(folder: Folder) -> str:
        return f"folders/{folder.tenant_id}/{folder.id}"

    def _key(self, folder: Folder, path: str) -> str:
        return f"{self._prefix(folder)}/{path}"

    def _put(
        self, folder: Folder, path: str, chunks: Iterable[bytes], *, max_bytes: int | None
    ) -> FolderFile:
        """Write to a private staging key, move into place, then index the file."""
        staging = f"{INCOMING}/{uuid.uuid4().hex}"
        size, sha256 = self.storage.write_stream(staging, chunks, max_bytes=max_bytes)
        replaced = self.store.get_file(folder.tenant_id, folder.id, path)
        try:
            self.storage_quota(folder.tenant_id, size - (replaced.size if replaced else 0))
        except errors.QuotaExceeded:
            self.storage.delete(staging)
            raise
        fs, target = self.storage.fs, self.storage.full(self._key(folder, path))
        try:
            if fs.isdir(target):  # left over: the index (checked before) has nothing below
                fs.rm(target, recursive=True)
            fs.makedirs(posixpath.dirname(target), exist_ok=True)
            fs.mv(self.storage.full(staging), target)
        except errors.StorageUnavailable:
            raise  # (an OSError too) the storage is down: 503, not the path's fault
        except OSError as e:
            self.storage.delete(staging)
            raise errors.InvalidInput(f"cannot store {path!r}: {e}", field="path") from e
        file = FolderFile(path=path, size=size, sha256=sha256, updated_at=self.clock.now())
        try:
            return self.store.upsert_file(folder.tenant_id, folder.id, file)
        except errors.NotFound:
            self.storage.delete(self._key(folder, path))  # the folder was deleted meanwhile
            raise

    def _remove(self, folder: Folder, path: str) -> None:
        """Delete a file from storage and, on local storage, its emptied parent dirs."""
        self.storage.delete(self._key(folder, path))
        if not self.storage.is_local:
            return
        parts = path.split("/")[:-1]
        while parts:
            parent = self.storage.full(self._key(folder, "/".join(parts)))
            try:
                os.rmdir(parent)
            except OSError:
                return  # not empty (or gone)
            parts.pop()


class _Skip(Exception):
    """An entry :meth:`FolderService.ingest` leaves out (the message is the reason)."""


def _rel(root: str, dirpath: str, name: str) -> str:
    return os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
