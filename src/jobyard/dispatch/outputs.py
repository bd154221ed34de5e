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
    symlinks, sorted by path."""
    found: list[tuple[str, Path]] = []
    if not root.is_dir() or root.is_symlink():
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        for name in filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def tree_bytes(root: Path, limit: int = 10_000) -> int:
    """Bytes of the regular files under ``root`` (the first ``limit`` files)."""
    total = 0
    for _, path in regular_files(root)[:limit]:
        try:
            total += os.lstat(path).st_size
        except OSError:
            continue
    return total


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
    *, job_id: str, output_dir: Path, blobs: BlobStore, roles: tuple[OutputRole, ...], now: datetime
) -> list[Artifact]:
    artifacts = []
    for rel, path in regular_files(output_dir):
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
