"""Attempt logs on the shared storage (``--storage-url``), for nodes that share it.

A job writes its log on the node that runs it (``Workspace.log_path``: the sandbox sees
only that directory). When the storage is shared, that node also keeps a copy where
every node can read it:

- while the attempt runs, what the log gained is shipped every ``log_sync_interval_s``
  as a segment ``logs/<job>/attempt-N.parts/<offset>`` (an object store has no append;
  each segment is the bytes from that offset on);
- when the attempt ends, the whole log is stored as ``logs/<job>/attempt-N.log``
  (before the end is written to the database, so a reader that sees the job ended finds
  the whole log) and the segments are removed.

A reader prefers the sealed log, else puts the segments together: an attempt whose node
died keeps what was shipped until then.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shutil
from collections.abc import Iterator
from pathlib import Path

from jobyard.storage import logs
from jobyard.storage.fs import Storage
from jobyard.storage.workspace import Workspace

log = logging.getLogger("jobyard.storage")

#: the longest segment shipped at once (a log that grows faster ships several)
MAX_SEGMENT_BYTES = 8 * 1024 * 1024
_DIGITS = 16  #: segment names are zero-padded offsets, so they sort by offset


class LogArchive:
    """``<storage>/logs/<job id>/``: sealed attempt logs and the segments of running ones."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _dir(job_id: str) -> str:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"invalid job id {job_id!r}")
        return f"logs/{job_id}"

    def sealed_key(self, job_id: str, attempt: int) -> str:
        return f"{self._dir(job_id)}/attempt-{attempt}.log"

    def _parts(self, job_id: str, attempt: int) -> str:
        return f"{self._dir(job_id)}/attempt-{attempt}.parts"

    # ---- the node that runs the attempt ---------------------------------------------------
    def ship(self, job_id: str, attempt: int, path: Path, offset: int, end: int) -> int:
        """Store the bytes ``[offset, end)`` of the local log ``path`` as segments; returns
        the offset shipped up to (less than ``end`` when the file is shorter)."""
        while offset < end:
            data = logs.read_range(path, offset, min(end - offset, MAX_SEGMENT_BYTES))
            if not data:
                break
            key = f"{self._parts(job_id, attempt)}/{offset:0{_DIGITS}d}"
            self.storage.put_bytes(key, data)
            offset += len(data)
        return offset

    def seal(self, job_id: str, attempt: int, path: Path, *, shipped: bool = True) -> None:
        """Store the whole local log of the ended attempt and drop its segments (if any
        were ``shipped``). No local log (the attempt never wrote one): nothing is stored."""
        if not path.exists():
            return
        self.storage.upload(path, self.sealed_key(job_id, attempt))
        if shipped:
            self.storage.delete_tree(self._parts(job_id, attempt))

    def delete(self, job_id: str) -> None:
        """Every log of the job (when the job is deleted)."""
        self.storage.delete_tree(self._dir(job_id))

    # ---- any node ---------------------------------------------------------------------------
    def _refresh(self, job_id: str, attempt: int) -> None:
        """Forget what the filesystem object cached about the attempt's log (s3fs caches
        listings and drops only the path given and its parents; a running log changes
        under it)."""
        fs = self.storage.fs
        for key in (self._parts(job_id, attempt), self.sealed_key(job_id, attempt)):
            with contextlib.suppress(Exception):
                fs.invalidate_cache(self.storage.full(key))

    def _segments(self, job_id: str, attempt: int) -> list[tuple[int, int, str]]:
        """(offset, size, full path) of the segments, by offset."""
        fs = self.storage.fs
        parts = self.storage.full(self._parts(job_id, attempt))
        try:
            entries = fs.ls(parts, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            name = posixpath.basename(str(entry["name"]).rstrip("/"))
            if len(name) == _DIGITS and name.isdigit():
                found.append((int(name), int(entry.get("size") or 0), str(entry["name"])))
        return sorted(found)

    def size(self, job_id: str, attempt: int) -> int:
        """Bytes of the attempt's log in the archive (0: none there)."""
        self._refresh(job_id, attempt)
        try:
            return int(self.storage.info(self.sealed_key(job_id, attempt))["size"])
        except FileNotFoundError:
            pass
        end = 0
        for offset, size, _ in self._segments(job_id, attempt):
            if offset > end:  # a gap: a segment could not be shipped; stop before it
                break
            end = max(end, offset + size)
        return end

    def read_range(self, job_id: str, attempt: int, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the attempt's log from ``offset`` (nothing when the
        archive has no log, or none that far)."""
        self._refresh(job_id, attempt)
        try:
            with self.storage.open_read(self.sealed_key(job_id, attempt)) as f:
                f.seek(offset)
                data: bytes = f.read(limit)
                return data
        except FileNotFoundError:
            pass
        return b"".join(self._from_segments(job_id, attempt, offset, limit))

    def _from_segments(self, job_id: str, attempt: int, offset: int, limit: int) -> Iterator[bytes]:
        pos, left = offset, limit
        for start, size, path in self._segments(job_id, attempt):
            if left <= 0 or start > pos:  # done, or a gap
                return
            if start + size <= pos:
                continue
            try:
                with self.storage.fs.open(path, "rb") as f:
                    f.seek(pos - start)
                    data: bytes = f.read(min(left, start + size - pos))
            except FileNotFoundError:  # sealed meanwhile: the caller reads again
                return
            if not data:
                return
            yield data
            pos += len(data)
            left -= len(data)


class JobLogs:
    """Where an attempt's log is read: the node's own file when this node ran the
    attempt (the freshest copy), else the shared archive (when logs are shared)."""

    def __init__(self, workspace: Workspace, archive: LogArchive | None) -> None:
        self.workspace = workspace
        self.archive = archive

    def _local(self, job_id: str, attempt: int) -> Path | None:
        path = self.workspace.log_path(job_id, attempt)
        return path if self.archive is None or path.exists() else None

    def read_range(
        self, job_id: str, attempt: int, offset: int, limit: int = logs.MAX_READ_BYTES
    ) -> bytes:
        local = self._local(job_id, attempt)
        if local is not None:
            return logs.read_range(local, offset, limit)
        assert self.archive is not None
        return self.archive.read_range(job_id, attempt, offset, limit)

    def tail_offset(self, job_id: str, attempt: int, lines: int) -> int:
        """The offset where the last ``lines`` lines start."""
        local = self._local(job_id, attempt)
        if local is not None:
            return logs.tail_offset(local, lines)
        assert self.archive is not None
        end = self.archive.size(job_id, attempt)
        start = max(0, end - logs.MAX_READ_BYTES)
        data = self.archive.read_range(job_id, attempt, start, end - start)
        return start + logs.tail_offset_in(data, lines)

    def delete(self, job_id: str) -> None:
        """The job's files on this node and its logs in the archive."""
        shutil.rmtree(self.workspace.job_dir(job_id), ignore_errors=True)
        if self.archive is not None:
            try:
                self.archive.delete(job_id)
            except OSError as e:
                log.warning("job %s: its logs could not be deleted from storage: %s", job_id, e)
