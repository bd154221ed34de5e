"""The log shipper: while attempts run, copies what their logs gained to the shared
storage every ``log_sync_interval_s``, so that every node's API can serve a running
job's log (``storage/logarchive.py``). A thread of its own: a slow object store delays
only the copies, never the supervisor's timeouts and lease renewals."""

from __future__ import annotations

import logging
import threading

from jobyard.dispatch.attempt import AttemptRunner, Attempts

log = logging.getLogger("jobyard.dispatch")


class LogShipper:
    def __init__(self, *, attempts: Attempts, runner: AttemptRunner, interval_s: float) -> None:
        self.attempts = attempts
        self.runner = runner
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jobyard-logship", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def ship_all(self) -> None:
        """One round: every running attempt whose log grew."""
        for a in self.attempts.all():
            if a.handle is None:
                continue
            try:
                self.runner.ship_log(a)
            except Exception as e:  # the storage is down: the next round tries again
                log.warning("job %s: its log could not be shipped: %s", a.job.id, e)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.ship_all()
