"""What a running job reports about itself (progress, records, warnings, samples),
and the records of its attempts, for the readers of the job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.domain import tracking
from jobyard.domain.auth import ROLE_RANK, Principal, Role
from jobyard.domain.jobs import Job
from jobyard.service.jobs import JobService
from jobyard.store.tracking import TrackingStore

MAX_REPORTS = 1000


class TrackingService:
    """Reports of the caller's jobs (each job read through :meth:`JobService.get`)."""

    def __init__(self, jobs: JobService, store: TrackingStore, clock: Clock) -> None:
        self.jobs = jobs
        self.store = store
        self.clock = clock

    def report(self, principal: Principal, job_id: str, objects: list[Any]) -> int:
        """Apply what a running job reports about itself (its token, or a user key)."""
        if principal.job_id is not None and principal.job_id != job_id:
            raise errors.Forbidden("a job token may only report on its own job")
        if principal.job_id is None and ROLE_RANK[principal.role] < ROLE_RANK[Role.MEMBER]:
            raise errors.Forbidden("a viewer key may only read")
        self.jobs.get(principal, job_id)
        if not 1 <= len(objects) <= MAX_REPORTS:
            raise errors.InvalidInput(f"send 1 to {MAX_REPORTS} reports", field="reports")
        parsed = []
        for i, obj in enumerate(objects):
            try:
                parsed.append(tracking.parse_report(obj))
            except errors.InvalidInput as e:
                field = f"reports[{i}].{e.details.get('field', 'type')}"
                raise errors.InvalidInput(f"{field}: {e.message}", field=field) from e
        try:
            return self.store.apply(job_id, parsed, self.clock.now(), epoch=principal.job_epoch)
        except errors.StaleState as e:  # fenced: a newer attempt runs, or the job ended
            raise errors.Unauthenticated(
                "the job token has expired: the attempt it belongs to no longer runs"
            ) from e

    def warnings(self, principal: Principal, job_id: str) -> list[dict[str, Any]]:
        return self.warnings_of(self.jobs.get(principal, job_id))

    def warnings_of(self, job: Job) -> list[dict[str, Any]]:
        """The warnings of a job the caller has already read (so may see): no second
        read of the job."""
        return self.store.warnings(job.tenant_id, job.id)

    def attempts(self, principal: Principal, job_id: str) -> list[Mapping[str, Any]]:
        self.jobs.get(principal, job_id)
        return self.store.attempts(principal.tenant_id, job_id)

    def samples(self, principal: Principal, job_id: str) -> list[Mapping[str, Any]]:
        self.jobs.get(principal, job_id)
        return self.store.samples(principal.tenant_id, job_id)
