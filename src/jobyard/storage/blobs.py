"""Content-addressed blobs (model artifacts, job results): stored once by sha256."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from jobyard.storage.fs import Storage, file_chunks


class BlobStore:
    """``<storage>/blobs/<sha[:2]>/<sha>``; immutable, deduplicated."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def key(sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return f"blobs/{sha256[:2]}/{sha256}"

    def put_stream(
        self, chunks: Iterable[bytes], *, max_bytes: int | None = None
    ) -> tuple[str, int]:
        """Store the bytes; returns (sha256, size). Identical content is kept once."""
        staging = f"blobs/incoming/{uuid.uuid4().hex}"
        size, sha = self.storage.write_stream(staging, chunks, max_bytes=max_bytes)
        final = self.key(sha)
        if self.storage.exists(final):
            self.storage.delete(staging)
        else:
            self.storage.fs.makedirs(self.storage.full(final.rsplit("/", 1)[0]), exist_ok=True)
            self.storage.fs.mv(self.storage.full(staging), self.storage.full(final))
        return sha, size

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a local file: hashed where it is, then uploaded once to its final key
        (no staging copy; nothing uploaded when the content is stored already)."""
        digest = hashlib.sha256()
        size = 0
        for chunk in file_chunks(path):
            digest.update(chunk)
            size += len(chunk)
        sha = digest.hexdigest()
        final = self.key(sha)
        if not self.storage.exists(final):
            self.storage.upload(path, final)
        return sha, size

    def exists(self, sha256: str) -> bool:
        return self.storage.exists(self.key(sha256))

    def read_chunks(self, sha256: str) -> Iterator[bytes]:
        return self.storage.read_chunks(self.key(sha256))

    def fetch(self, sha256: str, dest: Path) -> None:
        """Copy the blob to a local file and check its hash."""
        self.storage.download(self.key(sha256), dest)
        digest = hashlib.sha256()
        for chunk in file_chunks(dest):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            dest.unlink(missing_ok=True)
            raise OSError(f"blob {sha256} is corrupt in storage")
