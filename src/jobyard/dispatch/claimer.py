"""The claim loop: woken by submits and job ends (else every poll interval), it claims
as many queued jobs as there are free slots in one transaction, starts them, and
marks the started ones running in one more; scheduled jobs are promoted when the
earliest of them is due (one timer, read from the store)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch.attempt import Attempt, AttemptRunner, Attempts, needs_setup_thread
from jobyard.dispatch.ending import StopReason
from jobyard.domain.auth import hash_secret, job_token, new_token_secret
from jobyard.domain.states import JobState
from jobyard.executors.base import Handle
from jobyard.settings import Settings
from jobyard.store.claims import AttemptEnd, ClaimStore, Started

log = logging.getLogger("jobyard.dispatch")


class ClaimLoop:
    def __init__(
        self,
        *,
        attempts: Attempts,
        runner: AttemptRunner,
        claims: ClaimStore,
        clock: Clock,
        settings: Settings,
        node_id: str,
        watch: Callable[[Attempt, Handle], None],
    ) -> None:
        self.attempts = attempts
        self.runner = runner
        self.claims = claims
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.watch = watch  #: hands a running attempt to the exit waiter
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._next_promote = 0.0  #: monotonic time to look at scheduled jobs again
        self._thread = threading.Thread(target=self._loop, name="jobyard-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            delay = max(
                0.0, min(self.settings.poll_interval_s, self._next_promote - time.monotonic())
            )
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if time.monotonic() >= self._next_promote:
                    self._promote_scheduled()
                self._fill_slots()
            except errors.StoreUnavailable as e:
                log.warning("dispatch paused: %s", e)
            except Exception:  # keep the node alive; the next wake retries
                log.exception("dispatch loop error")

    def _promote_scheduled(self) -> None:
        """Queue the due scheduled jobs; the timer is set to the next due time (at most
        one poll interval away: other nodes and submits add scheduled jobs)."""
        self._next_promote = time.monotonic() + self.settings.poll_interval_s
        now = self.clock.now()
        if self.claims.promote_due(now):
            self._wake.set()
        due = self.claims.next_scheduled_at()
        if due is not None:
            wait = max(0.0, (due - self.clock.now()).total_seconds())
            self._next_promote = min(self._next_promote, time.monotonic() + wait)

    def _fill_slots(self) -> None:
        while not self._stopping.is_set():
            free = self.attempts.free_slots()
            if free <= 0:
                return
            secrets = [new_token_secret() for _ in range(free)]
            claimed = self.claims.claim(
                node_id=self.node_id,
                now=self.clock.now(),
                lease_ttl_s=self.settings.lease_ttl_s,
                max_slots=free,
                token_hashes=[hash_secret(s) for s in secrets],
                default_max_running=self.settings.max_running_jobs_default,
            )
            if not claimed:
                return
            inline: list[Attempt] = []
            for job, secret in zip(claimed, secrets, strict=False):
                a = Attempt(job=job, token=job_token(job.id, secret))
                self.attempts.add(a)
                if needs_setup_thread(job):
                    t = threading.Thread(
                        target=self.start_attempts, args=([a],), name=f"jobyard-setup-{job.id[:8]}"
                    )
                    t.daemon = True
                    t.start()
                else:
                    inline.append(a)
            self.start_attempts(inline)

    def start_attempts(self, batch: Sequence[Attempt]) -> None:
        """Set up and start the attempts; write the ends of those that could not start in
        one transaction and mark the started ones running in another."""
        ends: list[AttemptEnd] = []
        for a in batch:
            try:
                end = self.runner.launch(a)
            except Exception:
                log.exception("job %s: unexpected error while starting", a.job.id)
                end = None
            if a.handle is None and end is not None:
                ends.append(end)
        try:
            if ends:
                self.runner.write_ends(ends)
        finally:
            for a in batch:
                if a.handle is None:
                    self.attempts.remove(a.job.id)
            if ends:
                self._wake.set()
        self._mark_running([a for a in batch if a.handle is not None])

    def _mark_running(self, started: list[Attempt]) -> None:
        """starting → running in one transaction, then hand the attempts to the waiter
        (after the write, so an end never precedes its running state)."""
        if not started:
            return
        starts = []
        for a in started:
            assert a.handle is not None
            starts.append(
                Started(
                    job=a.job,
                    pid=a.handle.pid,
                    create_time=a.handle.create_time,
                    node_id=self.node_id,
                )
            )
        try:
            running = self.claims.mark_running(starts, self.clock.now())
        except Exception:
            log.exception("could not mark %d started jobs running: stopping them", len(started))
            running = [None] * len(started)
            for a in started:
                self.runner.request_stop(a, StopReason.LOST, force=True)
        for a, job in zip(started, running, strict=True):
            if job is not None:
                a.job = job
            elif a.stop_reason is not StopReason.LOST:
                self._changed_while_starting(a)
            assert a.handle is not None
            self.watch(a, a.handle)

    def _changed_while_starting(self, a: Attempt) -> None:
        try:
            current = self.claims.jobs.get_unscoped(a.job.id)
        except errors.StoreUnavailable:
            current = None
        if current is not None and current.state is JobState.CANCELLING:
            self.runner.request_stop(a, StopReason.CANCEL, force=current.cancel_force)
        else:
            self.runner.request_stop(a, StopReason.LOST, force=True)
