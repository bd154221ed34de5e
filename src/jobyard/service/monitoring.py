"""Background upkeep: cron schedules, retention, and overdue models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobyard.clock import Clock, to_epoch
from jobyard.domain.auth import Principal
from jobyard.domain.registry import Model
from jobyard.service.definitions import DefinitionService
from jobyard.service.periodic import Periodic
from jobyard.storage.logarchive import JobLogs
from jobyard.store.fairshare import FairShareStore
from jobyard.store.jobs import JobStore

log = logging.getLogger("jobyard.upkeep")


@dataclass(frozen=True)
class Overdue:
    model: Model
    last_success_at: datetime | None
    due_at: datetime  #: when a successful run was expected at the latest


class Upkeep(Periodic):
    """Fires cron schedules, purges expired jobs, folds idle fair-share rows and the
    counter rows of gone database connections (and of past hours) every ``interval_s``."""

    name = "upkeep"

    def __init__(
        self,
        *,
        definitions: DefinitionService,
        jobs: JobStore,
        logs: JobLogs,
        clock: Clock,
        interval_s: float,
        fair_share: FairShareStore | None = None,
    ) -> None:
        self.definitions = definitions
        self.fair_share = fair_share
        self.jobs = jobs
        self.logs = logs
        self.clock = clock
        super().__init__(interval_s)

    def tick(self) -> None:
        self.definitions.fire_due()
        self.purge_expired()
        if self.fair_share is not None:
            self.fair_share.fold(to_epoch(self.clock.now()))
        self.jobs.fold_count_shards()

    def purge_expired(self) -> int:
        """Delete the jobs, logs and results rows of models past their retention."""
        purged = 0
        for job in self.jobs.retention_expired(self.clock.now()):
            if self.jobs.delete_ended(job):
                self.logs.delete(job.id)
                purged += 1
        if purged:
            log.info("retention: purged %d jobs", purged)
        return purged


def overdue_models(
    principal: Principal, models: list[Model], jobs: JobStore, now: datetime
) -> list[Overdue]:
    """Models with ``expected_interval_minutes`` whose last successful job (or, without
    one, their creation) is older than that interval."""
    last = jobs.last_success_by_model(principal.tenant_id)
    found = []
    for m in models:
        if not m.expected_interval_minutes:
            continue
        since = last.get(m.id) or m.created_at
        due = since + timedelta(minutes=m.expected_interval_minutes)
        if due <= now:
            found.append(Overdue(model=m, last_success_at=last.get(m.id), due_at=due))
    return found
