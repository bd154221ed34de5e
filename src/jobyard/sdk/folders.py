"""SDK methods for folders and their files."""

from __future__ import annotations

import builtins
import hashlib
import os
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import quote

from pydantic import BaseModel

from jobyard.sdk.base import BaseClient
from jobyard.sdk.errors import APIError
from jobyard.sdk.models import Folder, FolderFile

#: files per multipart request of :meth:`FoldersMixin.upload_many`
BATCH_FILES = 100
_CHUNK = 1024 * 1024


class _Folders(BaseModel):
    items: list[Folder]


class _Files(BaseModel):
    items: list[FolderFile]


def _folder_path(ref: str, suffix: str = "") -> str:
    return f"/v1/folders/{quote(str(ref), safe='')}{suffix}"


def _file_path(ref: str, path: str) -> str:
    # dot segments are encoded: httpx would resolve them away and send another path
    segments = [
        s.replace(".", "%2E") if s in (".", "..") else quote(s, safe="") for s in path.split("/")
    ]
    return _folder_path(ref, "/files/" + "/".join(segments))


def expand_paths(
    paths: Iterable[str | os.PathLike[str]], prefix: str | None = None
) -> list[tuple[Path, str]]:
    """``[(local file, folder path)]`` for local files and directories: a file keeps its
    name, a directory its name and the relative paths below it (like ``cp -r``;
    symlinked directories are not entered), all under ``prefix`` when given.
    Raises FileNotFoundError for a path that does not exist."""
    out: list[tuple[Path, str]] = []
    for raw in paths:
        local = Path(raw)
        if local.is_dir():
            base = local.resolve().name
            for dirpath, dirnames, filenames in os.walk(local):
                dirnames.sort()
                for name in sorted(filenames):
                    file = Path(dirpath, name)
                    if file.is_file():
                        rel = file.relative_to(local).as_posix()
                        out.append((file, f"{base}/{rel}" if base else rel))
        elif local.is_file():
            out.append((local, local.name))
        else:
            raise FileNotFoundError(f"no such file or directory: {local}")
    if prefix:
        out = [(f, f"{prefix.strip('/')}/{p}") for f, p in out]
    return out


def local_target(dest_dir: Path, path: str) -> Path:
    """``dest_dir/path``, refusing a server-sent path that would leave ``dest_dir``."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or "\0" in path:
        raise APIError(f"the server sent an unsafe path {path!r}", code="BAD_RESPONSE")
    return dest_dir.joinpath(*pure.parts)


class FoldersMixin(BaseClient):
    """Folders and their files."""

    def create_folder(self, name: str, description: str | None = None) -> Folder:
        """Create a folder (:class:`Conflict` when the name is taken)."""
        body: dict[str, str] = {"name": name}
        if description is not None:
            body["description"] = description
        return self._parse(Folder, self._request("POST", "/v1/folders", json=body))

    def folders(self) -> builtins.list[Folder]:
        """Every folder of the tenant, by name."""
        return self._parse(_Folders, self._request("GET", "/v1/folders")).items

    def folder(self, ref: str) -> Folder:
        """The folder with this id or name."""
        return self._parse(Folder, self._request("GET", _folder_path(ref)))

    def delete_folder(self, ref: str) -> None:
        """Delete the folder and its files (:class:`Conflict` while unfinished jobs use it)."""
        self._request("DELETE", _folder_path(ref))

    def folder_files(self, ref: str) -> builtins.list[FolderFile]:
        """The folder's files, by path."""
        return self._parse(_Files, self._request("GET", _folder_path(ref, "/files"))).items

    def upload(
        self, ref: str, local_path: str | os.PathLike[str], path: str | None = None
    ) -> FolderFile:
        """Stream one local file into the folder as ``path`` (default: its file name),
        replacing a file with that path."""
        local = Path(local_path)
        with local.open("rb") as f:
            resp = self._request(
                "PUT",
                _file_path(ref, path or local.name),
                content=f,
                headers={"Content-Type": "application/octet-stream"},
            )
        return self._parse(FolderFile, resp)

    def upload_many(
        self,
        ref: str,
        paths: Iterable[str | os.PathLike[str]],
        prefix: str | None = None,
    ) -> builtins.list[FolderFile]:
        """Upload local files and directories (see :func:`expand_paths`) with multipart
        requests of up to :data:`BATCH_FILES` files."""
        todo = expand_paths(paths)
        stored: builtins.list[FolderFile] = []
        for start in range(0, len(todo), BATCH_FILES):
            with ExitStack() as stack:
                parts = [
                    (
                        "files",
                        (name, stack.enter_context(local.open("rb")), "application/octet-stream"),
                    )
                    for local, name in todo[start : start + BATCH_FILES]
                ]
                data = {"prefix": prefix} if prefix else None
                resp = self._request("POST", _folder_path(ref, "/files"), files=parts, data=data)
            stored.extend(self._parse(_Files, resp).items)
        return stored

    def download(self, ref: str, path: str, dest: str | os.PathLike[str]) -> Path:
        """Stream the file ``path`` to ``dest`` (a file, or an existing directory to put
        it in under its name); checks its sha256. Returns the local path."""
        target = Path(dest)
        if target.is_dir():
            target = target / PurePosixPath(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with tmp.open("xb") as out:  # not mkstemp: the file gets the usual umask mode
                expected, got = self._stream_to(_file_path(ref, path), out)
            if expected is not None and expected != got:
                raise APIError(
                    f"the download of {path!r} is corrupt (sha256 mismatch)",
                    code="CHECKSUM_MISMATCH",
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def download_folder(self, ref: str, dest_dir: str | os.PathLike[str]) -> builtins.list[Path]:
        """Download every file of the folder into ``dest_dir`` keeping relative paths."""
        root = Path(dest_dir)
        return [
            self.download(ref, f.path, local_target(root, f.path)) for f in self.folder_files(ref)
        ]

    def delete_file(self, ref: str, path: str) -> None:
        """Delete one file of the folder."""
        self._request("DELETE", _file_path(ref, path))

    # -- helpers ----------------------------------------------------------------

    def _stream_to(self, url: str, out: IO[bytes]) -> tuple[str | None, str]:
        """GET ``url`` into ``out``; (the server's sha256 header, the sha256 received)."""
        digest = hashlib.sha256()
        with self._stream("GET", url) as resp:
            for chunk in resp.iter_bytes(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            expected = resp.headers.get("X-Content-SHA256")
        return expected, digest.hexdigest()
