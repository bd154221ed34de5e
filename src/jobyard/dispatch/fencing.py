"""Self-fencing: how long a node keeps its jobs running without the database, and why
that keeps "at most one running attempt of a job" (docs/explanation/reliability.md,
"Store outages").

Every renewal of a lease is written with ``expires = t + lease_ttl_s``, ``t`` read before
the write; the node keeps, per attempt, the monotonic time of that ``t``
(``Attempt.renewed_mono``, first set by the claim). The watchdog (:class:`FenceWatch`, a
thread that never touches the database, so a hung connection cannot delay it) kills an
attempt whose lease went ``outage_tolerance_s`` without a renewal. It sleeps until the
earliest such deadline of its attempts: a renewal only moves an attempt's deadline later
(so waking at the old one is early, never late), and a new attempt due earlier than
that wakes it at once (``Attempts.on_add``; any new attempt while it looks), so no
deadline passes unwatched. Other nodes reap a lease only once it expired, and a retry
starts only after the reap. Hence, with
``lease_ttl_s ≥ outage_tolerance_s + FENCE_MARGIN_S``, the owner has killed the process
before any other node can start the job again. The margin covers the watchdog's wake-up
latency (a timed wait of its thread), the delivery of SIGKILL and the clock skew
between nodes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from jobyard import errors
from jobyard.dispatch.attempt import Attempt, Attempts
from jobyard.settings import Settings

log = logging.getLogger("jobyard.dispatch")

#: lease_ttl_s must exceed outage_tolerance_s by at least this much
FENCE_MARGIN_S = 2.0


class LeaseSettingsError(errors.JobyardError):
    """The lease settings cannot keep the fencing guarantee."""

    code = "INVALID_SETTINGS"


def check_lease_settings(settings: Settings) -> None:
    """Raise :class:`LeaseSettingsError` naming the settings when a node could be reaped
    before it fenced itself, or would fence itself between two heartbeats."""
    ttl, tolerance = settings.lease_ttl_s, settings.outage_tolerance_s
    beat = settings.heartbeat_interval_s
    if tolerance < 2 * beat:
        raise LeaseSettingsError(
            f"outage_tolerance_s ({tolerance:g} s) must be at least twice heartbeat_interval_s"
            f" ({beat:g} s): a node would stop its jobs after one late heartbeat"
        )
    if ttl < tolerance + FENCE_MARGIN_S:
        raise LeaseSettingsError(
            f"lease_ttl_s ({ttl:g} s) must be at least outage_tolerance_s ({tolerance:g} s)"
            f" + {FENCE_MARGIN_S:g} s: a node that loses the database stops its jobs after"
            " outage_tolerance_s, and other nodes may start them again once lease_ttl_s has"
            " passed (set JOBYARD_LEASE_TTL_S and JOBYARD_OUTAGE_TOLERANCE_S)"
        )


def reap_grace_s(settings: Settings) -> float:
    """How long a node waits after regaining the database before it reaps expired
    leases: one renewal round of the other nodes (which lost it too), with a margin."""
    return 2 * max(settings.heartbeat_interval_s, settings.poll_interval_s)


class FenceWatch:
    """Calls ``fence(attempt, seconds)`` once for each running attempt whose lease went
    ``outage_tolerance_s`` without a renewal (``seconds``: the time since the last one)."""

    def __init__(
        self, attempts: Attempts, tolerance_s: float, fence: Callable[[Attempt, float], None]
    ) -> None:
        self.attempts = attempts
        self.tolerance_s = tolerance_s
        self.fence = fence
        self._stopping = threading.Event()
        self._wake = threading.Event()  #: an attempt due earlier was added, or it stops
        #: monotonic time the watch sleeps until (``math.inf`` while it looks: then any
        #: new attempt wakes it, as it may have been added after the look)
        self._until = math.inf
        attempts.on_add(self._added)
        self._thread = threading.Thread(target=self._loop, name="jobyard-fence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _added(self, a: Attempt) -> None:
        if a.renewed_mono + self.tolerance_s < self._until:
            self._wake.set()

    def check(self, mono: float) -> float:
        """Fence the attempts whose lease went too long without renewal at ``mono``;
        returns the monotonic time at which the next one would (``math.inf``: none)."""
        next_at = math.inf
        for a in self.attempts.all():
            if a.fenced or a.exit_code is not None:
                continue
            unrenewed = mono - a.renewed_mono
            if unrenewed <= self.tolerance_s:
                next_at = min(next_at, a.renewed_mono + self.tolerance_s)
                continue
            a.fenced = True
            try:
                self.fence(a, unrenewed)
            except Exception:  # the watchdog must keep watching
                log.exception("job %s: self-fencing failed", a.job.id)
        return next_at

    def _loop(self) -> None:
        while True:
            self._until = math.inf
            self._wake.clear()  # before the attempts are read: a later add wakes again
            if self._stopping.is_set():
                return
            self._until = until = self.check(time.monotonic())
            self._wake.wait(None if until == math.inf else max(0.0, until - time.monotonic()))
