"""A job's results: the files it left in its output directory (recorded when it ended),
its primary output, and how much it used."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from jobyard import errors
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job
from jobyard.domain.results import Artifact, OutputType
from jobyard.domain.states import JobState
from jobyard.storage.blobs import BlobStore
from jobyard.storage.fs import safe_relpath
from jobyard.store.artifacts import ArtifactStore
from jobyard.store.jobs import JobStore

PARTIAL_STATES = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED})


@dataclass(frozen=True)
class Results:
    job: Job
    artifacts: list[Artifact]
    primary: Artifact | None
    partial: bool


class ResultService:
    def __init__(self, *, jobs: JobStore, artifacts: ArtifactStore, blobs: BlobStore) -> None:
        self.jobs = jobs
        self.artifacts = artifacts
        self.blobs = blobs

    def get(
        self, principal: Principal, job_id: str, output_type: OutputType | None = None
    ) -> Results:
        job = self.jobs.get(principal.tenant_id, job_id, principal.project_id)
        found = self.artifacts.list(principal.tenant_id, job_id)
        primary = _primary(found)
        if output_type is not None:
            found = [a for a in found if a.type is output_type]
        partial = job.state in PARTIAL_STATES
        return Results(job=job, artifacts=found, primary=primary, partial=partial)

    def open(
        self, principal: Principal, job_id: str, path: str
    ) -> tuple[Artifact, Iterator[bytes]]:
        rel = safe_relpath(path)
        self.jobs.get(principal.tenant_id, job_id, principal.project_id)  # 404 for the job first
        for a in self.artifacts.list(principal.tenant_id, job_id):
            if a.path == rel:
                return a, self.blobs.read_chunks(a.sha256)
        raise errors.NotFound(f"job {job_id} has no result {rel!r}", field="path")

    def zip_stream(self, principal: Principal, job_id: str) -> Iterator[bytes]:
        """All result files as one zip, produced file by file."""
        results = self.get(principal, job_id)
        if not results.job.is_terminal:
            raise errors.Conflict(f"job {job_id} has not ended yet; its results are not recorded")
        buf = _Spool()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for a in results.artifacts:
                with zf.open(a.path, "w") as out:
                    for chunk in self.blobs.read_chunks(a.sha256):
                        out.write(chunk)
                        yield from buf.drain()
        yield from buf.drain()


def _primary(found: list[Artifact]) -> Artifact | None:
    """The first output role's file, else the first report, else the first file."""
    with_role = [a for a in found if a.role]
    if with_role:
        return with_role[0]
    reports = [a for a in found if a.type is OutputType.REPORT]
    return reports[0] if reports else (found[0] if found else None)


class _Spool(io.RawIOBase):
    """A write-only stream whose bytes are handed on as they are written."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        yield from chunks
