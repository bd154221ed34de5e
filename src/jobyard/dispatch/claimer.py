"""The claim loop: the node's one writer of starts, ends and claims. Each step is one
transaction that marks attempts running (those that ended since, or started
``RUNNING_MARK_DELAY_S`` ago), writes the ends reported since the last step, and claims
queued jobs for the slots that are free; then the claimed jobs are started. It is woken
by submits and exits, by starts waiting for their running mark, else every poll
interval.
Scheduled jobs are promoted when the earliest of them is due (one timer, read from
the store).

While the database is unavailable (down, locked, full) the steps fail and are retried
with backoff: the ends and running marks waiting to be written stay in memory (an end
keeps its exit code and time), and the attempts keep their slots until they are
written."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import ending
from jobyard.dispatch.attempt import Attempt, AttemptRunner, Attempts, needs_setup_thread
from jobyard.dispatch.ending import StopReason
from jobyard.domain.auth import hash_secret, job_token, new_token_secret
from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.executors.base import Handle, outlives_its_processes
from jobyard.settings import Settings
from jobyard.store.claims import AttemptEnd, ClaimRequest, ClaimStore, EndResult, Started

log = logging.getLogger("jobyard.dispatch")
#: one info line per job state change this node writes (``serverlog``)
jobs_log = logging.getLogger("jobyard.jobs")

#: how long a start waits for its running mark: the mark waits that long for the
#: attempt's end (a short job's mark and end are then one UPDATE), then rides along
#: with the next step (an exit's end, a claim) or a commit of its own
RUNNING_MARK_DELAY_S = 0.05
#: the first and the longest pause before a failed step is tried again
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 2.0


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
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.attempts = attempts
        self.runner = runner
        self.claims = claims
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.watch = watch  #: hands a running attempt to the exit waiter
        self.accepting = accepting  #: whether the executor can start attempts now
        self._wake = threading.Event()
        self._claiming = True  #: False once the node shuts down: only ends are written
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._ends: list[tuple[Attempt, AttemptEnd | None]] = []  #: None: nothing to write
        self._starts: list[Attempt] = []  #: started, not yet marked running
        self._starts_at = 0.0  #: monotonic time the oldest of them started
        self._next_promote = 0.0  #: monotonic time to look at scheduled jobs again
        self._failing_since: float | None = None  #: monotonic time of the first failed step
        self._retry_s = RETRY_FIRST_S
        self._queued = False  #: a job was queued since the last step's claim began
        self._thread = threading.Thread(target=self._loop, name="jobyard-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._wake.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._claiming = False
        self._stopping.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def job_queued(self) -> None:
        """A job became runnable: step now if a slot is free. Else the step that frees
        one claims it (it sees the flag and steps again if it freed slots after its
        claim): a submit to a full node costs no step."""
        self._queued = True
        if self.attempts.free_slots() > 0:
            self._wake.set()

    def paused_for(self) -> float:
        """Seconds since the steps started failing for want of the database (0: they
        do not)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    def pending_ends(self) -> int:
        """Ends waiting to be written."""
        with self._lock:
            return len(self._ends)

    def ended(self, items: Sequence[tuple[Attempt, AttemptEnd | None]]) -> None:
        """Attempts whose processes exited (or that could not start), with their ends:
        written by the next step, after which their slots are free."""
        with self._lock:
            self._ends.extend(items)
        self._wake.set()

    # ---- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        # this thread ends only after the node's attempts (``Dispatcher.stop``): the
        # processes it starts may be its own children
        outlives_its_processes()
        while not self._stopping.is_set():
            mono = time.monotonic()
            delay = self.settings.poll_interval_s
            if self._claiming:
                delay = min(delay, self._next_promote - mono)
            with self._lock:
                if self._starts:
                    delay = min(delay, self._starts_at + RUNNING_MARK_DELAY_S - mono)
            self._wake.wait(max(0.0, delay))
            self._wake.clear()
            try:
                if self._claiming and time.monotonic() >= self._next_promote:
                    self._promote_scheduled()
                self._step()
            except errors.StoreUnavailable as e:  # pending ends and starts stay queued
                self._failed(e)
                continue
            except Exception:  # keep the node alive; the next wake retries
                log.exception("dispatch loop error")
                self._stopping.wait(RETRY_FIRST_S)
                continue
            self._resumed()

    def _failed(self, e: errors.StoreUnavailable) -> None:
        """A step failed for want of the database: wait (longer each time), then retry."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            with self._lock:
                ends, starts = len(self._ends), len(self._starts)
            log.warning(
                "dispatch paused: %s; %d ends and %d running marks wait to be written",
                e,
                ends,
                starts,
            )
        self._stopping.wait(self._retry_s)
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)
        self._wake.set()  # retry now, not after a poll interval

    def _resumed(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "dispatch resumed after %.1f s without the database",
                time.monotonic() - self._failing_since,
            )
        self._failing_since = None
        self._retry_s = RETRY_FIRST_S

    def _promote_scheduled(self) -> None:
        """Queue the due scheduled jobs; the timer is set to the next due time (at most
        one poll interval away: other nodes and submits add scheduled jobs)."""
        self._next_promote = time.monotonic() + self.settings.poll_interval_s
        due = self.claims.next_scheduled_at()
        if due is not None and due <= self.clock.now():
            self.claims.promote_due(self.clock.now())
            due = self.claims.next_scheduled_at()
        if due is not None:
            wait = max(0.0, (due - self.clock.now()).total_seconds())
            self._next_promote = min(self._next_promote, time.monotonic() + wait)

    def _step(self) -> None:
        """One transaction: running marks, ends, claims; then start what was claimed."""
        with self._lock:
            ends = list(self._ends)
            starts = self._due_starts({id(a) for a, _ in ends})
        for a, end in ends:  # results first: readers of an ended job find them
            if end is not None and a.results_pending:
                self.runner.collect_results(a)  # StoreUnavailable: the step waits
        self._queued = False  # this step's claim sees the jobs queued until now
        free = self.attempts.free_slots(excluding=[a for a, _ in ends])
        claiming = self._claiming and free > 0 and self.accepting()
        secrets = [new_token_secret() for _ in range(free)] if claiming else []
        request = None
        if secrets:
            request = ClaimRequest(
                node_id=self.node_id,
                lease_ttl_s=self.settings.lease_ttl_s,
                max_slots=free,
                token_hashes=tuple(hash_secret(s) for s in secrets),
                default_max_running=self.settings.max_running_jobs_default,
            )
        mono = time.monotonic()  # claims' leases last until at least mono + TTL
        now = self.clock.now()
        pending = {id(a) for a in starts}
        written = [
            (a, self._as_of_now(a, e, id(a) in pending, now)) for a, e in ends if e is not None
        ]
        writes = [end for _, end in written]
        step = self.claims.step(
            now=now,
            starts=[self._started(a) for a in starts],
            ends=writes,
            claim=request,
        )
        with self._lock:  # written: no longer pending
            del self._ends[: len(ends)]
            if starts:
                marked = {id(a) for a in starts}
                self._starts = [a for a in self._starts if id(a) not in marked]
                if self._starts:
                    self._starts_at = min(a.started_mono for a in self._starts)
        self._after_running(starts, step.running)
        again = [
            (a, end)
            for (a, _), end in zip(written, self._after_ends(writes, step.ended), strict=True)
            if end is not None
        ]
        for a, _ in ends:  # each attempt by itself: never a newer attempt of its job
            if not any(a is b for b, _ in again):
                self.attempts.remove(a)
        if again:
            self.ended(again)
        if step.claimed:
            self._start_claimed(step.claimed, secrets, mono, step.synced)
        if claiming and len(step.claimed) < free:  # a slot stays idle: the next job's
            self.runner.park()  # sandbox is started ahead (where the executor can)
        if self._queued and self.attempts.free_slots() > 0:
            self._wake.set()  # queued during the step, when no slot looked free
        if jobs_log.isEnabledFor(logging.INFO):
            self._log_changes(step.claimed, step.running, step.ended)

    def _due_starts(self, ended: set[int]) -> list[Attempt]:
        """The starts this step marks running (under ``_lock``): those whose attempt
        ended (the mark and the end are one UPDATE), and those that waited
        ``RUNNING_MARK_DELAY_S`` for their end. A younger one waits on: a job of a few
        milliseconds is marked with its end, one UPDATE and one read of its process
        (``Started.create_time``) fewer, the read not while its exec still runs."""
        mono = time.monotonic()
        return [
            a
            for a in self._starts
            if id(a) in ended or mono - a.started_mono >= RUNNING_MARK_DELAY_S
        ]

    def _log_changes(
        self,
        claimed: list[Job],
        running: list[Job | None],
        ended: list[EndResult],
    ) -> None:
        """``job <id> starting|running|<end state>`` lines, after the step wrote them."""
        node = self.node_id
        for job in claimed:
            _log_state(job.id, "starting", node, f"attempt {job.attempt}")
        for marked in running:
            if marked is not None:
                _log_state(marked.id, "running", node, f"pid {marked.pid}")
        for result in ended:
            done = result.ended
            if done is not None:
                code = f"exit code {done.exit_code}" if done.exit_code is not None else ""
                _log_state(done.id, done.state.value, node, code)

    @staticmethod
    def _as_of_now(a: Attempt, end: AttemptEnd, start_pending: bool, now: datetime) -> AttemptEnd:
        """``end`` against the attempt's job as this loop knows it now: the exit may have
        been handled before the running mark was written (then it is written first, in
        the same step), and a cancel end applies to the cancelling row."""
        job = a.job
        if start_pending:
            job = job.evolve(state=JobState.RUNNING, started_at=a.started_at or now)
        if end.target is JobState.CANCELLED:
            job = job.evolve(state=JobState.CANCELLING)
        return replace(end, job=job)

    def _started(self, a: Attempt) -> Started:
        assert a.handle is not None
        return Started(
            job=a.job,
            pid=a.handle.pid,
            create_time=a.handle.create_time,
            node_id=self.node_id,
            started_at=a.started_at or self.clock.now(),
        )

    def _after_running(self, started: list[Attempt], running: list[Job | None]) -> None:
        """Keep the running jobs; stop the attempts whose job changed meanwhile."""
        for a, job in zip(started, running, strict=True):
            if job is not None:
                a.job = job
            elif a.stop_reason is not StopReason.LOST:
                self._changed_while_starting(a)

    @staticmethod
    def _after_ends(writes: list[AttemptEnd], results: list[EndResult]) -> list[AttemptEnd | None]:
        """For each end, the end to write again as cancelled: its job was cancelled
        meanwhile (same lease epoch, state cancelling); else None (written, or no longer
        ours)."""
        again: list[AttemptEnd | None] = []
        for end, result in zip(writes, results, strict=True):
            current = result.current
            again.append(None)
            if result.ended is not None or current is None:
                continue
            if current.lease_epoch == end.job.lease_epoch and current.state is JobState.CANCELLING:
                outcome = ending.cancelled(current.cancel_force)
                again[-1] = AttemptEnd(
                    job=current.evolve(started_at=end.job.started_at or current.started_at),
                    target=outcome.target,
                    message=outcome.message,
                    error_type=outcome.error_type,
                    exit_code=end.exit_code,
                    usage=end.usage,
                )
        return again

    # ---- starting ------------------------------------------------------------------------
    def _start_claimed(
        self, claimed: list[Job], secrets: list[str], mono: float, synced: Callable[[], None]
    ) -> None:
        for job, secret in zip(claimed, secrets, strict=False):
            a = Attempt(
                job=job, token=job_token(job.id, secret), renewed_mono=mono, claim_synced=synced
            )
            previous = self.attempts.get(job.id)
            if previous is not None:  # its lease was lost and the job retried: stop it now
                self.runner.request_stop(previous, StopReason.LOST, force=True)
            self.attempts.add(a)
            if needs_setup_thread(job):
                threading.Thread(
                    target=self._launch, args=(a,), name=f"jobyard-setup-{job.id[:8]}", daemon=True
                ).start()
            else:
                self._launch(a)

    def _launch(self, a: Attempt) -> None:
        """Set up and start one attempt; it is marked running (or its end written) by the
        next step."""
        try:
            end = self.runner.launch(a)
        except Exception as e:  # not left "starting" until its lease expires
            log.exception("job %s: unexpected error while starting", a.job.id)
            end = self.runner.failed_to_start(a, e)
        if a.handle is None:
            self.ended([(a, end)])
            return
        with self._lock:
            if not self._starts:
                self._starts_at = a.started_mono
            self._starts.append(a)
        self.watch(a, a.handle)  # its end is written after its running mark, by a step

    def _changed_while_starting(self, a: Attempt) -> None:
        try:
            current = self.claims.jobs.get_unscoped(a.job.id)
        except errors.StoreUnavailable:
            current = None
        if (
            current is not None
            and current.state is JobState.RUNNING
            and current.lease_epoch == a.job.lease_epoch
            and a.handle is not None
            and current.pid == a.handle.pid
        ):  # our own mark, committed by a step whose answer was lost (connection drop)
            a.job = current
            return
        if current is not None and current.state is JobState.CANCELLING:
            self.runner.request_stop(a, StopReason.CANCEL, force=current.cancel_force)
        else:
            self.runner.request_stop(a, StopReason.LOST, force=True)


def _log_state(job_id: str, state: str, node: str, detail: str) -> None:
    jobs_log.info(
        "job %s %s%s",
        job_id,
        state,
        f" ({detail})" if detail else "",
        extra={"job_id": job_id, "state": state, "node_id": node},
    )
