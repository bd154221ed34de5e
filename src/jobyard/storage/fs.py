"""Files on fsspec storage: a local directory by default, any fsspec URL (s3://…)
by configuration. Paths given by users are checked here so nothing escapes its root.

fsspec (≈ 1.4 MB of the server's memory) is imported when a local storage is first used,
not at start: a server that stores no file does not load it."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import posixpath
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from jobyard import errors

CHUNK = 1024 * 1024
log = logging.getLogger("jobyard.storage")

#: errors that say something about the path, not about the storage being down
_ABOUT_THE_PATH = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
#: the modules whose errors (beyond OSError) mean an object store does not answer
_REMOTE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "azure")


def outage(url: str, e: BaseException) -> errors.JobyardError | None:
    """The jobyard error for a failure of the storage itself (it does not answer, refuses
    access, or its disk is full), None for anything else (a missing file, a bug)."""
    if isinstance(e, errors.JobyardError) or isinstance(e, _ABOUT_THE_PATH):
        return None
    if not isinstance(e, OSError) and not type(e).__module__.startswith(_REMOTE_MODULES):
        return None
    log.warning("the storage at %s failed: %s: %s", url, type(e).__name__, e)
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return errors.StorageFull("the storage is full: nothing can be stored until space is freed")
    return errors.StorageUnavailable(
        "the file storage cannot be read or written at the moment (the server's log has the"
        " cause); retry later"
    )


@contextlib.contextmanager
def guarded(url: str) -> Iterator[None]:
    """Raise the storage's failures as :class:`errors.StorageUnavailable` (503)."""
    try:
        yield
    except Exception as e:
        mapped = outage(url, e)
        if mapped is None:
            raise
        raise mapped from e


class GuardedFS:
    """An fsspec filesystem whose calls raise the storage's failures as jobyard errors;
    everything else (attributes, missing files) as the filesystem does."""

    def __init__(self, fs: Any, url: str) -> None:
        self._fs = fs
        self._url = url

    @property
    def unguarded(self) -> Any:
        return self._fs

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if not callable(attr):
            return attr
        return _guard_call(attr, self._url)


def _guard_call(fn: Callable[..., Any], url: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with guarded(url):
            return fn(*args, **kwargs)

    return call


def safe_relpath(path: str, field: str = "path") -> str:
    """Normalise a user-given relative path (``/``-separated) or raise InvalidInput.

    Refuses absolute paths, ``..``, empty segments after normalisation, NUL and control
    characters, backslashes and drive letters."""
    if not path or len(path) > 1024:
        raise errors.InvalidInput(f"{field} must be 1 to 1024 characters", field=field)
    text = unicodedata.normalize("NFC", path)
    if any(ord(c) < 32 for c in text) or "\\" in text:
        raise errors.InvalidInput(f"{field} {path!r} contains forbidden characters", field=field)
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise errors.InvalidInput(f"{field} {path!r} must be relative", field=field)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise errors.InvalidInput(f"{field} {path!r} must not contain '..'", field=field)
    return "/".join(parts)


class Storage:
    """An fsspec filesystem rooted at ``url``. A local directory is made at once; its
    filesystem is opened on first use. Any other URL is opened at once, so a wrong one
    fails at start."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        local = _local_path(self.url)
        if local is None:
            self._opened  # noqa: B018 (open now)
        else:
            with guarded(self.url):
                os.makedirs(local, exist_ok=True)

    @functools.cached_property
    def _opened(self) -> tuple[GuardedFS, str, bool]:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url)
        is_local = getattr(fs, "protocol", None) in ("file", ("file", "local"))
        #: every call answers a failure of the storage as errors.StorageUnavailable
        return GuardedFS(fs, self.url), root.rstrip("/"), is_local

    @property
    def fs(self) -> Any:
        return self._opened[0]

    @fs.setter
    def fs(self, fs: GuardedFS) -> None:
        """Another filesystem for the same root (a test's instance of its own)."""
        _, root, is_local = self._opened
        self._opened = (fs, root, is_local)

    @property
    def root(self) -> str:
        return self._opened[1]

    @property
    def is_local(self) -> bool:
        return self._opened[2]

    def full(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def write_stream(
        self, key: str, chunks: Iterable[bytes], *, max_bytes: int | None = None
    ) -> tuple[int, str]:
        """Write ``chunks`` to ``key`` (atomically on local storage); returns (size, sha256).
        Raises InvalidInput (nothing written) when more than ``max_bytes`` arrive."""
        target = self.full(key)
        tmp = f"{target}.{uuid.uuid4().hex}.part"  # unique: concurrent writers never share it
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        try:
            with guarded(self.url), self.fs.open(tmp, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise errors.InvalidInput(
                            f"the file is larger than the limit of {max_bytes} bytes", field="file"
                        )
                    digest.update(chunk)
                    f.write(chunk)
            self.fs.mv(tmp, target)
        except BaseException:
            with contextlib.suppress(Exception):  # the storage may be down: the error stands
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise
        return size, digest.hexdigest()

    def upload(self, path: Path, key: str) -> None:
        """Copy a local file to ``key``; readers see the old object or the whole new one
        (a rename on local storage; on an object store a single PUT, atomic by itself)."""
        if self.is_local:
            self.write_stream(key, file_chunks(path))
        else:
            self.fs.put_file(str(path), self.full(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` (whole or not at all, as :meth:`upload`)."""
        if self.is_local:
            self.write_stream(key, [data])
        else:
            self.fs.pipe_file(self.full(key), data)

    def open_read(self, key: str) -> IO[bytes]:
        f: IO[bytes] = self.fs.open(self.full(key), "rb")
        return f

    def read_chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes. Opened, and its first chunk read, at once: a missing object
        or a storage that does not answer raises here, before an HTTP answer starts
        streaming them (an object store's ``open`` may answer from a cached listing)."""
        f = self.open_read(key)
        try:
            with guarded(self.url):
                first = f.read(CHUNK)
        except BaseException:
            with contextlib.suppress(Exception):
                f.close()
            raise
        return self._chunks(f, first)

    def _chunks(self, f: IO[bytes], first: bytes) -> Iterator[bytes]:
        with f, guarded(self.url):
            chunk = first
            while chunk:
                yield chunk
                chunk = f.read(CHUNK)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.full(key)))

    def download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self.full(key), str(dest))

    def delete_tree(self, key: str) -> None:
        path = self.full(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def delete(self, key: str) -> None:
        path = self.full(key)
        if self.fs.exists(path):
            self.fs.rm(path)

    def info(self, key: str) -> dict[str, Any]:
        info: dict[str, Any] = self.fs.info(self.full(key))
        return info


def _local_path(url: str) -> str | None:
    """The directory of a local storage URL (a path or ``file://…``), None for others."""
    if url.startswith("file://"):
        return url[len("file://") :] or "/"
    return None if "://" in url or "::" in url else url


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
