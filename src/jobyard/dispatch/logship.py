"""The log shipper: while attempts run, copies what their logs gained to the shared
storage every ``log_sync_interval_s``, so that every node's API can serve a running
job's log (``storage/logarchive.py``). A thread of its own: a slow object store delays
only the copies, never the supervisor's timeouts and lease renewals."""

from __future__ import annotations

import logging

from jobyard.dispatch.attempt import AttemptRunner, Attempts
from jobyard.service.periodic import Periodic

log = logging.getLogger("jobyard.dispatch")


class LogShipper(Periodic):
    name = "logship"

    def __init__(self, *, attempts: Attempts, runner: AttemptRunner, interval_s: float) -> None:
        super().__init__(interval_s)
        self.attempts = attempts
        self.runner = runner

    def tick(self) -> None:
        self.ship_all()

    def ship_all(self) -> None:
        """One round: every running attempt whose log grew."""
        for a in self.attempts.all():
            if a.handle is None:
                continue
            try:
                self.runner.ship_log(a)
            except Exception as e:  # the storage is down: the next round tries again
                log.warning("job %s: its log could not be shipped: %s", a.job.id, e)
