"""Job logs: read a range or the tail of an attempt's log, and follow it as it grows."""

from __future__ import annotations

from dataclasses import dataclass

from jobyard import errors
from jobyard.domain import states
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.service.jobs import JobService
from jobyard.storage import logs
from jobyard.storage.logarchive import JobLogs


@dataclass(frozen=True)
class LogPoll:
    data: bytes
    next_offset: int
    attempt: int
    done: bool


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    offset: int
    next_offset: int


class LogService:
    """The logs of the caller's jobs (read through :meth:`JobService.get`, so a key sees
    only its tenant's, or its project's, jobs)."""

    def __init__(self, jobs: JobService, files: JobLogs) -> None:
        self.jobs = jobs
        self.files = files

    @staticmethod
    def _attempt_no(job: Job, attempt: int | None) -> int:
        if attempt is not None and not 1 <= attempt <= max(job.attempt, 1):
            raise errors.NotFound(f"job {job.id} has no attempt {attempt}", field="attempt")
        return attempt or max(job.attempt, 1)

    def read_log(
        self,
        principal: Principal,
        job_id: str,
        *,
        offset: int = 0,
        tail: int | None = None,
        attempt: int | None = None,
    ) -> LogChunk:
        job = self.jobs.get(principal, job_id)
        number = self._attempt_no(job, attempt)
        if offset < 0:
            raise errors.InvalidInput("offset must be >= 0", field="offset")
        if tail is not None:
            if tail < 0:
                raise errors.InvalidInput("tail must be >= 0", field="tail")
            offset = self.files.tail_offset(job.id, number, tail)
        data = self.files.read_range(job.id, number, offset)
        return LogChunk(data, offset, offset + len(data))

    def poll_log(
        self,
        principal: Principal,
        job_id: str,
        *,
        offset: int = 0,
        attempt: int | None = None,
        limit: int = logs.MAX_READ_BYTES,
    ) -> LogPoll:
        """One non-blocking step of following a log: the bytes written since ``offset``
        and whether the log is complete (the job has ended and all was read). Pass the
        returned ``attempt`` back so a retry's new log does not mix with the old one."""
        job = self.jobs.get(principal, job_id)
        current = max(job.attempt, 1)
        pinned = attempt or current
        data = self.files.read_range(job.id, self._attempt_no(job, pinned), offset, limit)
        if data:
            return LogPoll(data, offset + len(data), pinned, done=False)
        if pinned < current and job.state is not JobState.QUEUED:
            return LogPoll(b"", offset, pinned, done=True)
        return LogPoll(b"", offset, pinned, done=job.state in states.TERMINAL)
