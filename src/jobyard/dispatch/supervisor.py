"""The supervisor: every tick checks timeouts and scans the logs that grew; every
sample interval samples the process trees (an attempt's first sample waits
``FIRST_SAMPLE_DELAY_S``, so a short job costs no sampling); every heartbeat renews
the leases with the latest usage and picks up cancels made through other nodes;
every reap interval fails the jobs of other nodes whose lease expired."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import timedelta

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import ending, outputs
from jobyard.dispatch.attempt import Attempt, AttemptRunner, Attempts
from jobyard.dispatch.ending import StopReason
from jobyard.domain.jobs import Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.settings import Settings
from jobyard.store.claims import AttemptEnd, ClaimStore
from jobyard.store.nodes import NodeStore
from jobyard.store.tracking import TrackingStore

log = logging.getLogger("jobyard.dispatch")

TICK_S = 0.05
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
        self._last_renewal = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="jobyard-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        next_beat = next_reap = next_sample = 0.0
        while not self._stopping.wait(TICK_S):
            mono = time.monotonic()
            try:
                running = [a for a in self.attempts.all() if a.handle is not None]
                self._check_timeouts(running)
                for a in running:
                    self.runner.scan_if_grown(a)
                if mono >= next_sample:
                    next_sample = mono + self.settings.sample_interval_s
                    self._sample(running, mono)
                if mono >= next_beat:
                    next_beat = mono + self.settings.heartbeat_interval_s
                    self.heartbeat()
                if mono >= next_reap:
                    next_reap = mono + self.settings.reap_interval_s
                    self.reap_expired()
            except Exception:
                log.exception("supervisor error")

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
        record samples; stop the attempts that are no longer ours or were cancelled."""
        runs = {a.job.id: a for a in self.attempts.all()}
        now = self.clock.now()
        mono = time.monotonic()
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
            self.nodes.heartbeat(self.node_id, now)
            self.tracking.add_samples(sampled, now)
        except errors.StoreUnavailable:
            if time.monotonic() - self._last_renewal > self.settings.lease_ttl_s / 2:
                log.error("cannot renew leases: stopping every job on this node (self-fencing)")
                for a in runs.values():
                    self.runner.request_stop(a, StopReason.LOST, force=True)
            return
        self._last_renewal = time.monotonic()
        for job_id, a in runs.items():
            current = held.get(job_id)
            if current is None:
                if a.handle is None or a.handle.wait(0) is None:  # running, but not ours
                    self.runner.request_stop(a, StopReason.LOST, force=True)
            elif current.state is JobState.CANCELLING:
                self.runner.request_stop(a, StopReason.CANCEL, force=current.cancel_force)

    def reap_expired(self) -> None:
        """Fail (or finish cancelling) the jobs of other nodes whose lease expired."""
        lost = [
            j
            for j in self.claims.expired_leases(self.clock.now())
            if self.attempts.get(j.id) is None
        ]
        self.fail_lost(lost, "its lease expired without a heartbeat")

    def fail_lost(self, jobs: list[Job], why: str) -> None:
        """End attempts whose node is gone: failed as NODE_LOST, or cancelled."""
        ends = []
        for job in jobs:
            o = ending.node_lost(job, why)
            ends.append(
                AttemptEnd(job=job, target=o.target, message=o.message, error_type=o.error_type)
            )
        self.claims.end_attempts(ends, self.clock.now())
