"""The supervisor: while attempts run, every tick (``TICK_S``) checks timeouts and
scans the logs that grew; every sample interval samples the process trees (an
attempt's first sample waits ``FIRST_SAMPLE_DELAY_S``, so a short job costs no
sampling); every heartbeat renews the leases with the latest usage and picks up
cancels made through other nodes; every reap interval fails the jobs of other nodes
whose lease expired. An attempt is first looked at ``FIRST_LOOK_S`` after its start
(a job that ends sooner has its log scanned at its exit, as every job does): while
only younger attempts run, none with a timeout, it sleeps until the first of them
comes due, the next heartbeat or reap, so a stream of short jobs costs no ticks. With
no running attempt it sleeps until the next heartbeat or reap;
:meth:`Supervisor.attempt_started` wakes it for a new attempt.

A database outage is not a node loss: the jobs keep running while the leases cannot be
renewed, up to ``outage_tolerance_s``; then the fence watch (``fencing.FenceWatch``, a
thread of its own) stops them, before their leases can expire elsewhere. After an outage
the node waits one renewal round of the other nodes (``fencing.reap_grace_s``) before it
reaps their leases, so they can renew them or write their own ends first."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import ending, fencing, outputs
from jobyard.dispatch.attempt import Attempt, AttemptRunner, Attempts
from jobyard.dispatch.ending import Outcome, StopReason
from jobyard.domain.jobs import Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.settings import Settings
from jobyard.store.claims import AttemptEnd, ClaimStore
from jobyard.store.nodes import NodeStore
from jobyard.store.tracking import TrackingStore

log = logging.getLogger("jobyard.dispatch")

TICK_S = 0.05
FIRST_LOOK_S = 0.1
FIRST_SAMPLE_DELAY_S = 0.5


class Supervisor:
    def __init__(
        self,
        *,
        attempts: Attempts,
        runner: AttemptRunner,
        claims: ClaimStore,
        nodes: NodeStore,
        tracking: TrackingStore,
        clock: Clock,
        settings: Settings,
        node_id: str,
    ) -> None:
        self.attempts = attempts
        self.runner = runner
        self.claims = claims
        self.nodes = nodes
        self.tracking = tracking
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self._stopping = threading.Event()
        self._wake = threading.Event()  #: an attempt started while idle, or the node stops
        #: True from before the loop reads the attempts until it saw a running one: then
        #: a start wakes it (else it ticks anyway)
        self._idle = True
        #: monotonic time since which the heartbeats reach the database (None: they fail)
        self._store_ok_since: float | None = None
        self._store_lost_at: float | None = None  #: monotonic time of the first failure
        self.fence_watch = fencing.FenceWatch(attempts, settings.outage_tolerance_s, self._fence)
        self._thread = threading.Thread(target=self._loop, name="jobyard-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.fence_watch.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self.fence_watch.stop(timeout)

    def attempt_started(self) -> None:
        """An attempt's process started (``Attempt.handle`` is set): tick from now on."""
        if self._idle:
            self._wake.set()

    def store_down_for(self) -> float:
        """Seconds since the heartbeats stopped reaching the database (0: they do)."""
        lost = self._store_lost_at
        return 0.0 if lost is None else time.monotonic() - lost

    def _loop(self) -> None:
        next_beat = next_reap = next_sample = 0.0
        delay = TICK_S
        while True:
            self._wake.wait(delay)
            self._idle = True
            self._wake.clear()  # before the attempts are read: a later start wakes again
            if self._stopping.is_set():
                return
            mono = time.monotonic()
            running = [a for a in self.attempts.all() if a.handle is not None]
            self._idle = not running
            self._guarded(self._check_timeouts, running)
            looked = [a for a in running if mono - a.started_mono >= FIRST_LOOK_S]
            for a in looked:  # a report the database refuses must not stop the heartbeat
                self._guarded(self.runner.scan_if_grown, a)
            if mono >= next_sample:
                next_sample = mono + self.settings.sample_interval_s
                self._guarded(self._sample, running, mono)
            if mono >= next_beat:
                next_beat = mono + self.settings.heartbeat_interval_s
                self._guarded(self.heartbeat)
            if mono >= next_reap and self._may_reap(mono):
                next_reap = mono + self.settings.reap_interval_s
                self._guarded(self.reap_expired)
            if looked or any(a.deadline is not None for a in running):
                delay = TICK_S  # timeouts, markers and samples: every tick
            else:  # young attempts only (or none): until the first comes due
                due = [a.started_mono + FIRST_LOOK_S for a in running]
                delay = min(next_beat, self._reap_at(next_reap), *due) - time.monotonic()
            delay = max(delay, 0.0)

    def _reap_at(self, next_reap: float) -> float:
        """When the next reap may run: not before the heartbeats have reached the
        database for ``reap_grace_s`` (never while they fail: a heartbeat comes first)."""
        since = self._store_ok_since
        if since is None:
            return math.inf
        return max(next_reap, since + fencing.reap_grace_s(self.settings))

    @staticmethod
    def _guarded(step: Callable[..., None], *args: object) -> None:
        try:
            step(*args)
        except errors.StoreUnavailable as e:  # the heartbeat says so once per outage
            log.debug("supervisor: %s", e)
        except Exception:
            log.exception("supervisor error")

    def _may_reap(self, mono: float) -> bool:
        """Reap only after the heartbeats have reached the database for one renewal round
        of the other nodes: after an outage they may renew their leases first."""
        since = self._store_ok_since
        return since is not None and mono - since >= fencing.reap_grace_s(self.settings)

    def _check_timeouts(self, running: list[Attempt]) -> None:
        now = self.clock.now()
        for a in running:
            if a.deadline is not None and now >= a.deadline and a.stop_reason is None:
                self.runner.request_stop(a, StopReason.TIMEOUT, force=False)

    @staticmethod
    def _due_for_sample(a: Attempt, mono: float) -> bool:
        return a.handle is not None and mono - a.started_mono >= FIRST_SAMPLE_DELAY_S

    def _sample(self, running: list[Attempt], mono: float) -> None:
        for a in running:
            if not self._due_for_sample(a, mono):
                continue
            assert a.handle is not None
            a.usage = a.handle.sample()
            limit = a.memory_limit_bytes
            if (
                limit is not None
                and not a.handle.kernel_limits
                and (a.usage.rss_bytes or 0) > limit
            ):
                self.runner.request_stop(a, StopReason.MEMORY, force=True)

    def heartbeat(self) -> None:
        """Renew the leases (with the usage of the attempts old enough to be sampled) and
        record samples; stop the attempts that are no longer ours or were cancelled.
        Attempts whose end waits to be written are renewed too."""
        runs = {a.job.id: a for a in self.attempts.all()}
        mono = time.monotonic()  # before ``now``: each lease lasts until at least mono + TTL
        now = self.clock.now()
        usage: dict[str, ResourceUsage] = {}
        sampled: list[tuple[Job, ResourceUsage]] = []
        for a in runs.values():
            if a.launch is None or not self._due_for_sample(a, mono):
                continue
            assert a.handle is not None
            if a.usage.rss_bytes is None:  # started since the last sampling
                a.usage = a.handle.sample()
            a.usage = replace(a.usage, disk_bytes=outputs.tree_bytes(a.launch.workdir / "output"))
            usage[a.job.id] = a.usage
            sampled.append((a.job, a.usage))
        try:
            held = self.claims.renew_leases(
                node_id=self.node_id,
                leases=[(a.job.id, a.job.lease_epoch) for a in runs.values()],
                expires_at=now + timedelta(seconds=self.settings.lease_ttl_s),
                usage=usage,
            )
        except errors.StoreUnavailable as e:
            self._store_failed(e, len(runs))
            return
        for job_id in held:
            runs[job_id].renewed_mono = mono
        try:
            self.nodes.heartbeat(self.node_id, now)
            self.tracking.add_samples(sampled, now)
        except errors.StoreUnavailable as e:
            self._store_failed(e, len(runs))
        else:
            self._store_answered(mono)
        for job_id, a in runs.items():
            current = held.get(job_id)
            if current is None:
                if a.handle is None or a.handle.wait(0) is None:  # running, but not ours
                    self.runner.request_stop(a, StopReason.LOST, force=True)
            elif current.state is JobState.CANCELLING:
                self.runner.request_stop(a, StopReason.CANCEL, force=current.cancel_force)

    def _store_failed(self, e: errors.StoreUnavailable, jobs: int) -> None:
        if self._store_lost_at is None:
            self._store_lost_at = time.monotonic()
            log.warning(
                "cannot renew the leases of %d jobs: %s; they keep running for up to"
                " outage_tolerance_s (%g s)",
                jobs,
                e,
                self.settings.outage_tolerance_s,
            )
        self._store_ok_since = None

    def _store_answered(self, mono: float) -> None:
        if self._store_lost_at is not None:
            log.warning("the database answers again after %.1f s", mono - self._store_lost_at)
            self._store_lost_at = None
        if self._store_ok_since is None:
            self._store_ok_since = mono

    def _fence(self, a: Attempt, unrenewed_s: float) -> None:
        """Stop an attempt whose lease went too long without renewal (self-fencing)."""
        log.error(
            "job %s: could not reach the database for %.0f s: stopping it so that no other"
            " node runs it twice",
            a.job.id,
            unrenewed_s,
        )
        a.fenced_after_s = unrenewed_s
        self.runner.request_stop(a, StopReason.FENCED, force=True)

    def reap_expired(self) -> None:
        """Fail (or finish cancelling) the jobs of other nodes whose lease expired."""
        lost = [
            j
            for j in self.claims.expired_leases(self.clock.now())
            if self.attempts.get(j.id) is None
        ]
        self.end_lost(lost, ending.lease_expired)

    def fail_lost(self, jobs: list[Job], why: str) -> None:
        """End attempts whose node is gone: failed as NODE_LOST, or cancelled."""
        self.end_lost(jobs, lambda job: ending.node_lost(job, why))

    def end_lost(self, jobs: list[Job], outcome: Callable[[Job], Outcome]) -> None:
        """End attempts whose node is gone, as ``outcome`` says."""
        ends = []
        for job in jobs:
            o = outcome(job)
            ends.append(
                AttemptEnd(job=job, target=o.target, message=o.message, error_type=o.error_type)
            )
        self.claims.end_attempts(ends, self.clock.now())
