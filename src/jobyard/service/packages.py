"""Code packages uploaded by Ray's job client (``working_dir`` and ``py_modules``
archives): existence checks and raw uploads.

Packages are named by the client from a hash of their content and are kept per tenant
at ``packages/<tenant>/<protocol>/<name>``: a shared store would let one tenant upload
a package under the name another tenant's client computes, whose client would then
skip its own upload and run the planted code. The dispatcher reads the same key when it
unpacks a job's packages (``dispatch/prepare.py: package_key``)."""

from __future__ import annotations

import posixpath
import re
import uuid
import zipfile
from collections.abc import Iterable, Sequence

from jobyard import errors
from jobyard.domain.auth import Principal
from jobyard.storage.fs import Storage

PROTOCOLS = frozenset({"gcs"})  #: what Ray's client uploads to
#: Ray's names: ``_ray_pkg_<hex>.zip`` (a directory or a zip file), ``<wheel file name>``
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,250}\.(zip|whl)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
STAGING = "packages/.incoming"  #: no tenant id starts with a dot


def package_key(tenant_id: str, protocol: str, name: str) -> str:
    """The storage key of a tenant's package; raises InvalidInput for a bad name."""
    if protocol not in PROTOCOLS:
        raise errors.InvalidInput(
            f"package protocol {protocol!r} is not supported (use gcs)", field="protocol"
        )
    if not NAME.match(name) or ".." in name:
        raise errors.InvalidInput(
            f"package name {name!r} is not valid (expected _ray_pkg_<hash>.zip or a .whl"
            " file name)",
            field="package_name",
        )
    if not _SEGMENT.match(tenant_id) or ".." in tenant_id:
        raise errors.InvalidInput(f"tenant id {tenant_id!r} cannot name a package directory")
    return f"packages/{tenant_id}/{protocol}/{name}"


def split_uri(uri: str) -> tuple[str, str]:
    """``gcs://name.zip`` → ``("gcs", "name.zip")``."""
    protocol, sep, name = uri.partition("://")
    if not sep:
        raise errors.InvalidInput(f"not a package URI: {uri!r}", field="uri")
    return protocol, name


class PackageService:
    """The package store of one storage, with an upload size limit."""

    def __init__(self, storage: Storage, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes

    def exists(self, principal: Principal, protocol: str, name: str) -> bool:
        return self.storage.exists(package_key(principal.tenant_id, protocol, name))

    def put(self, principal: Principal, protocol: str, name: str, chunks: Iterable[bytes]) -> int:
        """Store the raw bytes (replacing a package of the same name, atomically);
        returns the size. Raises InvalidInput when larger than ``max_bytes`` or not a
        zip archive (wheels are zips too): nothing is stored then."""
        key = package_key(principal.tenant_id, protocol, name)
        staging = f"{STAGING}/{uuid.uuid4().hex}"
        size, _sha = self.storage.write_stream(staging, chunks, max_bytes=self.max_bytes)
        try:
            with self.storage.open_read(staging) as f:
                if not zipfile.is_zipfile(f):
                    raise errors.InvalidInput(
                        f"package {name!r} is not a zip archive", field="package_name"
                    )
            target = self.storage.full(key)
            self.storage.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            self.storage.fs.mv(self.storage.full(staging), target)
        except BaseException:
            self.storage.delete(staging)
            raise
        return size

    def missing(self, principal: Principal, uris: Sequence[str]) -> list[str]:
        """The URIs among ``uris`` that were not uploaded (or are not package URIs)."""
        out = []
        for uri in uris:
            try:
                found = self.exists(principal, *split_uri(uri))
            except errors.InvalidInput:
                found = False
            if not found:
                out.append(uri)
        return out
