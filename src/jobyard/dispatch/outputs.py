"""Collecting a job's results when it ends: every regular file of its output directory
is stored by content hash and recorded (symlinks and special files are skipped), and
uploaded to the job's output folder when it has one."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

from jobyard.domain.registry import OutputRole
from jobyard.domain.results import Artifact, classify
from jobyard.storage.blobs import BlobStore

MAX_COUNTED_BYTES = 256 * 1024 * 1024


def regular_files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, absolute path) of the regular files under ``root``, not following
    symlinks (nor ``root`` if it is one), sorted by path. One ``lstat`` of the root and
    one read of each directory: ``os.walk`` behind pathlib's checks took ≈ 7 system calls
    more, ≈ 40 µs of the exit waiter's CPU for a job's empty ``output/``."""
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            return []
    except OSError:
        return []
    found: list[tuple[str, str]] = []
    _scan_dir(os.fspath(root), "", found)
    found.sort()
    return [(rel, Path(path)) for rel, path in found]


def _scan_dir(directory: str, prefix: str, found: list[tuple[str, str]]) -> None:
    """Add the regular files under ``directory`` to ``found`` (unreadable ones are
    skipped, as ``os.walk`` does)."""
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _scan_dir(entry.path, f"{prefix}{entry.name}/", found)
            elif entry.is_file(follow_symlinks=False):
                found.append((prefix + entry.name, entry.path))
        except OSError:
            continue


def files_bytes(files: list[tuple[str, Path]], limit: int = 10_000) -> int:
    """Bytes of ``files`` (:func:`regular_files`' answer; the first ``limit``)."""
    total = 0
    for _, path in files[:limit]:
        try:
            total += os.lstat(path).st_size
        except OSError:
            continue
    return total


def tree_bytes(root: Path, limit: int = 10_000) -> int:
    """Bytes of the regular files under ``root`` (the first ``limit`` files)."""
    return files_bytes(regular_files(root), limit)


def record_count(path: Path, fmt: str) -> int | None:
    """Data rows of a csv/tsv (lines minus the header) or jsonl file; None otherwise."""
    if fmt not in ("csv", "tsv", "jsonl", "ndjson") or path.stat().st_size > MAX_COUNTED_BYTES:
        return None
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    if fmt in ("csv", "tsv"):
        return max(0, lines - 1)
    return lines


def role_of(rel: str, roles: tuple[OutputRole, ...]) -> str | None:
    """The output role a result file fills: its name without extension, or its top
    directory, equals the role's name."""
    stem = Path(rel).stem.split(".")[0]
    top = rel.split("/", 1)[0]
    for role in roles:
        if role.role in (stem, top):
            return role.role
    return None


def collect(
    *,
    job_id: str,
    output_dir: Path,
    blobs: BlobStore,
    roles: tuple[OutputRole, ...],
    now: datetime,
    files: list[tuple[str, Path]] | None = None,
) -> list[Artifact]:
    """The artifacts of the regular files in ``output_dir`` (``files``: its
    :func:`regular_files`, when the caller has read them already)."""
    artifacts = []
    for rel, path in regular_files(output_dir) if files is None else files:
        kind, fmt = classify(rel)
        sha, size = blobs.put_file(path)
        artifacts.append(
            Artifact(
                job_id=job_id,
                path=rel,
                type=kind,
                format=fmt,
                size=size,
                sha256=sha,
                record_count=record_count(path, fmt),
                role=role_of(rel, roles),
                created_at=now,
            )
        )
    return artifacts
