"""The node's dispatcher: claims queued jobs into free slots, runs them through the
executor, keeps their leases alive, enforces timeouts and cancels, and fails the
jobs of nodes that died.

Threads: one dispatch loop (woken on submit, else every poll interval), one
supervisor (ticks: timeouts and samples; heartbeats: lease renewal, cancels
requested through other nodes, reaping expired leases), and one watcher per running
job blocked on its process, so an exit is noticed at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import jobenv, messages
from jobyard.domain.jobs import ErrorType, Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.executors.base import Executor, Handle, LaunchSpec
from jobyard.settings import Settings
from jobyard.storage import logs
from jobyard.storage.workspace import Workspace
from jobyard.store.jobs import JobStore
from jobyard.store.listen import QueueListener
from jobyard.store.nodes import NodeStore

log = logging.getLogger("jobyard.dispatch")

TICK_S = 0.05


@dataclass
class _Run:
    job: Job
    handle: Handle
    deadline: datetime | None
    stop_reason: str | None = None
    thread: threading.Thread | None = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)


class Dispatcher:
    """Runs jobs on this node; implements the service layer's ``Wakeup``."""

    def __init__(
        self,
        *,
        store: JobStore,
        nodes: NodeStore,
        executor: Executor,
        workspace: Workspace,
        clock: Clock,
        settings: Settings,
        node_id: str,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.executor = executor
        self.workspace = workspace
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.slots = max(1, settings.slots)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_renewal = time.monotonic()
        self._listener = (
            QueueListener(store.db, self.job_queued) if store.db.dialect == "postgresql" else None
        )

    # ---- Wakeup -----------------------------------------------------------------------
    def job_queued(self) -> None:
        self._wake.set()

    def cancel_requested(self, job_id: str) -> None:
        job = self.store.get_unscoped(job_id)
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None and job is not None and job.state is JobState.CANCELLING:
            self._request_stop(run, "cancel", force=job.cancel_force)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        now = self.clock.now()
        self.nodes.register(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            slots=self.slots,
            now=now,
        )
        self.reconcile()
        for target, name in ((self._loop, "dispatch"), (self._supervise, "supervisor")):
            t = threading.Thread(target=target, name=f"jobyard-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        if self._listener is not None:
            self._listener.start()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, stop the running jobs (they fail as NODE_LOST), and wait."""
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        for t in self._threads:
            t.join(timeout)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._request_stop(run, "shutdown", force=False)
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout)
        try:
            self.nodes.set_status(self.node_id, "stopped", self.clock.now())
        except errors.StoreUnavailable:
            log.warning("could not mark node %s stopped", self.node_id)

    def running_count(self) -> int:
        with self._lock:
            return len(self._runs)

    def reconcile(self) -> None:
        """Fail the jobs this node owned in a previous life (killing leftover processes)."""
        for job in self.store.owned_by(self.node_id):
            if job.pid and job.pid_create_time:
                self.executor.kill_orphan(job.pid, job.pid_create_time)
            self._fail_lost(job, "the server restarted while the job ran")

    # ---- dispatch loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._promote_scheduled()
                self._fill_slots()
            except errors.StoreUnavailable as e:
                log.warning("dispatch paused: %s", e)
            except Exception:  # keep the node alive; the next wake retries
                log.exception("dispatch loop error")

    def _promote_scheduled(self) -> None:
        now = self.clock.now()
        for job in self.store.due_scheduled(now):
            try:
                self.store.transition(
                    job, JobState.QUEUED, now=now, message="Scheduled time reached; job queued."
                )
            except errors.StaleState:
                continue

    def _fill_slots(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if len(self._runs) >= self.slots:
                    return
            job = self.store.claim_next(
                node_id=self.node_id, now=self.clock.now(), lease_ttl_s=self.settings.lease_ttl_s
            )
            if job is None:
                return
            self._launch(job)

    def _launch(self, job: Job) -> None:
        workdir = self.workspace.prepare(job.id, job.attempt, job.spec.parameters)
        log_path = self.workspace.log_path(job.id, job.attempt)
        env = jobenv.build_env(
            job_id=job.id,
            attempt=job.attempt,
            api_url=self.settings.api_url,
            workdir=workdir,
            parameters=job.spec.parameters,
            user_env=job.spec.env,
        )
        spec = LaunchSpec(
            job_id=job.id,
            attempt=job.attempt,
            entrypoint=job.spec.entrypoint,
            argv=job.spec.argv,
            workdir=workdir,
            log_path=log_path,
            env=env,
        )
        try:
            handle = self.executor.start(spec)
        except errors.ExecutorError as e:
            self._complete_from(
                job,
                JobState.FAILED,
                message=messages.start_error(e.message),
                values={"error_type": ErrorType.ENTRYPOINT_COMMAND_START_ERROR.value},
            )
            return
        now = self.clock.now()
        deadline = now + timedelta(seconds=job.spec.timeout_s) if job.spec.timeout_s else None
        run = _Run(job=job, handle=handle, deadline=deadline)
        with self._lock:
            self._runs[job.id] = run
        try:
            run.job = self.store.transition(
                job,
                JobState.RUNNING,
                now=now,
                epoch=job.lease_epoch,
                message=f"Job is running on node {self.node_id} (pid {handle.pid}).",
                values={
                    "pid": handle.pid,
                    "pid_create_time": handle.create_time,
                    "started_at": now,
                },
                event_data={"pid": handle.pid, "node_id": self.node_id},
            )
        except errors.StaleState:
            current = self.store.get_unscoped(job.id)
            if current is not None and current.state is JobState.CANCELLING:
                self._request_stop(run, "cancel", force=current.cancel_force)
            else:
                self._request_stop(run, "lost", force=True)
        run.thread = threading.Thread(
            target=self._watch, args=(run,), name=f"jobyard-job-{job.id[:8]}", daemon=True
        )
        run.thread.start()

    # ---- one job --------------------------------------------------------------------------
    def _watch(self, run: _Run) -> None:
        code = run.handle.wait(None)
        assert code is not None
        run.handle.cleanup()
        try:
            self._finish(run, code)
        except Exception:
            log.exception("could not record the end of job %s", run.job.id)
        finally:
            with self._lock:
                self._runs.pop(run.job.id, None)
            self._wake.set()

    def _finish(self, run: _Run, code: int) -> None:
        job = run.job
        usage = run.handle.sample()
        values: dict[str, Any] = {
            "exit_code": code,
            "cpu_percent": usage.cpu_percent,
            "rss_bytes": usage.rss_bytes,
            "peak_rss_bytes": usage.peak_rss_bytes,
            "cpu_time_s": usage.cpu_time_s,
        }
        reason = run.stop_reason
        if reason == "lost":
            return  # the job is no longer ours: write nothing (fenced by the epoch anyway)
        if reason == "timeout":
            target, message = JobState.TIMED_OUT, messages.timed_out(job)
            values["error_type"] = ErrorType.TIMEOUT.value
        elif reason == "shutdown":
            target, message = (
                JobState.FAILED,
                messages.node_lost(self.node_id, "the node shut down"),
            )
            values["error_type"] = ErrorType.NODE_LOST.value
        elif code == 0:
            target, message = JobState.SUCCEEDED, messages.succeeded()
        else:
            tail = logs.last_lines(
                self.workspace.log_path(job.id, job.attempt), self.settings.log_tail_lines
            )
            target, message = JobState.FAILED, messages.failed(code, tail)
            values["error_type"] = ErrorType.ENTRYPOINT_COMMAND_ERROR.value
        self._complete_from(job, target, message=message, values=values)

    def _complete_from(
        self, job: Job, target: JobState, *, message: str, values: dict[str, Any]
    ) -> None:
        """End ``job`` in ``target``; if a cancel came first, end it cancelled instead.
        Every write is fenced by the lease epoch of this attempt."""
        now = self.clock.now()
        try:
            self.store.transition(
                job, target, now=now, epoch=job.lease_epoch, message=message, values=values
            )
            return
        except (errors.StaleState, errors.InvalidTransition):
            pass
        current = self.store.get_unscoped(job.id)
        if current is None or current.lease_epoch != job.lease_epoch:
            return
        if current.state is JobState.CANCELLING:
            values = {k: v for k, v in values.items() if k != "error_type"}
            self.store.transition(
                current,
                JobState.CANCELLED,
                now=now,
                epoch=job.lease_epoch,
                message=messages.cancelled(current.cancel_force),
                values={**values, "error_type": ErrorType.CANCELLED.value},
            )

    def _request_stop(self, run: _Run, reason: str, *, force: bool) -> None:
        with self._lock:
            if run.stop_reason is not None and not (force and reason == "cancel"):
                return
            run.stop_reason = run.stop_reason or reason
        grace = 0.0 if force else self.settings.stop_grace_s
        threading.Thread(
            target=self._stop_quietly,
            args=(run.handle, grace, force),
            name="jobyard-stop",
            daemon=True,
        ).start()

    @staticmethod
    def _stop_quietly(handle: Handle, grace: float, force: bool) -> None:
        try:
            handle.stop(grace, force=force)
        except Exception:
            log.exception("stopping pid %s failed", handle.pid)

    # ---- supervisor --------------------------------------------------------------------------
    def _supervise(self) -> None:
        next_beat = next_reap = next_sample = 0.0
        while not self._stopping.wait(TICK_S):
            mono = time.monotonic()
            try:
                self._check_timeouts()
                if mono >= next_sample:
                    next_sample = mono + self.settings.sample_interval_s
                    self._sample()
                if mono >= next_beat:
                    next_beat = mono + self.settings.heartbeat_interval_s
                    self._heartbeat()
                if mono >= next_reap:
                    next_reap = mono + self.settings.reap_interval_s
                    self.reap_expired()
            except Exception:
                log.exception("supervisor error")

    def _check_timeouts(self) -> None:
        now = self.clock.now()
        with self._lock:
            late = [r for r in self._runs.values() if r.deadline is not None and now >= r.deadline]
        for run in late:
            self._request_stop(run, "timeout", force=False)

    def _sample(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.usage = run.handle.sample()

    def _heartbeat(self) -> None:
        with self._lock:
            runs = dict(self._runs)
        now = self.clock.now()
        try:
            held = self.store.renew_leases(
                node_id=self.node_id,
                leases=[(r.job.id, r.job.lease_epoch) for r in runs.values()],
                expires_at=now + timedelta(seconds=self.settings.lease_ttl_s),
            )
            self.nodes.heartbeat(self.node_id, now)
            for run in runs.values():
                self.store.record_usage(run.job.id, run.job.lease_epoch, run.usage)
        except errors.StoreUnavailable:
            if time.monotonic() - self._last_renewal > self.settings.lease_ttl_s / 2:
                log.error("cannot renew leases: stopping every job on this node (self-fencing)")
                for run in runs.values():
                    self._request_stop(run, "lost", force=True)
            return
        self._last_renewal = time.monotonic()
        for job_id, run in runs.items():
            current = held.get(job_id)
            if current is None:
                if run.handle.wait(0) is None:  # still running but no longer ours
                    self._request_stop(run, "lost", force=True)
            elif current.state is JobState.CANCELLING:
                self._request_stop(run, "cancel", force=current.cancel_force)

    def reap_expired(self) -> None:
        """Fail (or finish cancelling) the jobs of other nodes whose lease expired."""
        now = self.clock.now()
        for job in self.store.expired_leases(now):
            with self._lock:
                if job.id in self._runs:
                    continue
            self._fail_lost(job, "its lease expired without a heartbeat")

    def _fail_lost(self, job: Job, why: str) -> None:
        now = self.clock.now()
        try:
            if job.state is JobState.CANCELLING:
                self.store.transition(
                    job,
                    JobState.CANCELLED,
                    now=now,
                    epoch=job.lease_epoch,
                    message=messages.cancelled(job.cancel_force)
                    + " "
                    + messages.node_lost(job.lease_owner, why),
                    values={"error_type": ErrorType.CANCELLED.value},
                )
            else:
                self.store.transition(
                    job,
                    JobState.FAILED,
                    now=now,
                    epoch=job.lease_epoch,
                    message=messages.node_lost(job.lease_owner, why),
                    values={"error_type": ErrorType.NODE_LOST.value},
                )
        except errors.StaleState:
            pass
