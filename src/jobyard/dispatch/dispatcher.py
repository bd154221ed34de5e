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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import messages, outputs
from jobyard.dispatch.prepare import Preparer, SetupError
from jobyard.dispatch.scanner import LogScanner
from jobyard.domain import retry, tracking
from jobyard.domain.auth import hash_secret, job_token, new_token_secret
from jobyard.domain.jobs import ErrorType, Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.executors.base import Executor, Handle, LaunchSpec
from jobyard.settings import Settings
from jobyard.storage import logs
from jobyard.storage.workspace import Workspace
from jobyard.store.artifacts import ArtifactStore
from jobyard.store.jobs import JobStore
from jobyard.store.listen import queue_listener
from jobyard.store.nodes import NodeStore
from jobyard.store.tracking import TrackingStore

log = logging.getLogger("jobyard.dispatch")

TICK_S = 0.05


@dataclass
class _Run:
    job: Job
    handle: Handle | None = None  #: None while the job is being set up
    launch: LaunchSpec | None = None
    deadline: datetime | None = None
    memory_limit_bytes: int | None = None
    stop_reason: str | None = None
    stop_force: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    scanner: LogScanner | None = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    summary: str | None = None  #: what a notebook runner said about its failed cells
    token: str = ""  #: the job token of this attempt (only its hash is stored)
    log_limit: int = 0  #: bytes of log kept for this attempt (0: unlimited)
    scan_lock: threading.Lock = field(default_factory=threading.Lock)


class Dispatcher:
    """Runs jobs on this node; implements the service layer's ``Wakeup``."""

    def __init__(
        self,
        *,
        store: JobStore,
        nodes: NodeStore,
        executor: Executor,
        workspace: Workspace,
        preparer: Preparer,
        artifacts: ArtifactStore,
        tracking: TrackingStore,
        clock: Clock,
        settings: Settings,
        node_id: str,
        log_limit: Callable[[str], int] = lambda _tenant: 100 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.executor = executor
        self.workspace = workspace
        self.preparer = preparer
        self.artifacts = artifacts
        self.tracking = tracking
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.slots = max(1, settings.slots)
        self.log_limit = log_limit
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_renewal = time.monotonic()
        self._next_promote = 0.0
        self._listener = queue_listener(store.db, self.job_queued)

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
                if time.monotonic() >= self._next_promote:
                    self._next_promote = time.monotonic() + self.settings.poll_interval_s
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

    def _free_slots(self) -> int:
        with self._lock:
            return self.slots - sum(r.job.spec.slots for r in self._runs.values())

    def _fill_slots(self) -> None:
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                return
            secret = new_token_secret()
            job = self.store.claim_next(
                node_id=self.node_id,
                now=self.clock.now(),
                lease_ttl_s=self.settings.lease_ttl_s,
                max_slots=free,
                token_hash=hash_secret(secret),
                default_max_running=self.settings.max_running_jobs_default,
            )
            if job is None:
                return
            run = _Run(job=job, token=job_token(job.id, secret))
            with self._lock:
                self._runs[job.id] = run
            run.thread = threading.Thread(
                target=self._run_job, args=(run,), name=f"jobyard-job-{job.id[:8]}", daemon=True
            )
            run.thread.start()

    # ---- one job --------------------------------------------------------------------------
    def _run_job(self, run: _Run) -> None:
        try:
            code = self._start_and_wait(run)
            if code is not None:
                self._collect_results(run)
                self._finish(run, code)
        except Exception:
            log.exception("job %s: unexpected error in the dispatcher", run.job.id)
        finally:
            with self._lock:
                self._runs.pop(run.job.id, None)
            self._wake.set()

    def _say(self, run: _Run, line: str) -> None:
        path = self.workspace.log_path(run.job.id, run.job.attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")

    def _start_and_wait(self, run: _Run) -> int | None:
        """Set the job up, start it, wait for it; the exit code, or None when it ended
        without running (setup failure, cancelled while starting)."""
        job = run.job
        try:
            prepared = self.preparer.prepare(
                job, run.cancel, lambda line: self._say(run, line), run.token
            )
        except SetupError as e:
            self._say(run, f"jobyard: {e.message}")
            self._end_unstarted(run, JobState.FAILED, e.message, e.error_type)
            return None
        if run.stop_reason is not None:
            self._end_unstarted(run, JobState.FAILED, "", "")
            return None
        run.launch = prepared.launch
        run.memory_limit_bytes = prepared.memory_limit_bytes
        run.log_limit = self.log_limit(job.tenant_id)
        run.scanner = LogScanner(prepared.launch.log_path)
        try:
            handle = self.executor.start(prepared.launch)
        except errors.ExecutorError as e:
            self._end_unstarted(
                run,
                JobState.FAILED,
                messages.start_error(e.message),
                ErrorType.ENTRYPOINT_COMMAND_START_ERROR.value,
            )
            return None
        now = self.clock.now()
        with self._lock:
            run.handle = handle
            run.deadline = (
                now + timedelta(seconds=job.spec.timeout_s) if job.spec.timeout_s else None
            )
            pending_stop = run.stop_reason
        if pending_stop is not None:  # a stop arrived while the process was being started
            self._stop_async(
                handle, 0.0 if run.stop_force else self.settings.stop_grace_s, run.stop_force
            )
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
        code = handle.wait(None)
        assert code is not None
        handle.cleanup()
        self._scan(run)
        if run.log_limit:
            logs.cap(prepared.launch.log_path, run.log_limit)
        return code

    def _end_unstarted(self, run: _Run, target: JobState, message: str, error_type: str) -> None:
        if run.stop_reason == "lost":
            return
        if run.stop_reason == "shutdown":
            target, message = (
                JobState.FAILED,
                messages.node_lost(self.node_id, "the node shut down"),
            )
            error_type = ErrorType.NODE_LOST.value
        self._complete_from(run.job, target, message=message, values={"error_type": error_type})

    def _collect_results(self, run: _Run) -> None:
        """Record the output directory's files as results (also after a failure or a
        cancel: what was written is kept) and upload them to the output folder."""
        if run.stop_reason == "lost" or run.launch is None:
            return
        job = run.job
        output_dir = run.launch.workdir / "output"
        try:
            roles = self.preparer.output_roles(job)
            found = outputs.collect(
                job_id=job.id,
                output_dir=output_dir,
                blobs=self.preparer.blobs,
                roles=roles,
                now=self.clock.now(),
            )
            if found or job.attempt > 1:  # a retry replaces the previous attempt's results
                self.artifacts.replace(job.tenant_id, job.id, found)
            folder = self.preparer.output_folder(job)
            if folder is not None and found:
                self.preparer.folders.ingest(folder, output_dir)
        except Exception as e:  # results are best effort; the job's outcome stands
            log.exception("job %s: results could not be recorded", job.id)
            self._say(run, f"jobyard: results could not be recorded: {e}")

    def _scan(self, run: _Run) -> None:
        """Apply the marker lines the job printed since the last scan. The supervisor and
        the job's watcher both scan; one at a time, and the watcher's last scan (before
        the job's end is written) waits for a running one to finish applying."""
        if run.scanner is None:
            return
        with run.scan_lock:
            for marker in run.scanner.poll():
                self._apply_marker(run, marker)

    def _apply_marker(self, run: _Run, marker: dict[str, Any]) -> None:
        kind = marker["type"]
        if kind in ("cell", "paragraph"):
            index = marker.get("index")
            status = marker.get("status", "")
            error = f": {marker['error']}" if marker.get("error") else ""
            title = f" ({marker['title']})" if marker.get("title") else ""
            text = f"{kind.capitalize()} {index}{title} {status}{error}"
            self.store.add_event(
                run.job, now=self.clock.now(), kind=kind, message=text, data=marker
            )
        elif kind in tracking.REPORT_TYPES:
            try:
                self.tracking.apply(run.job.id, [tracking.parse_report(marker)], self.clock.now())
            except errors.JobyardError as e:  # a malformed marker is output, not a failure
                log.info("job %s: marker ignored: %s", run.job.id, e)
        elif kind in ("notebook", "note"):
            run.summary = str(marker.get("message") or "") or None
            self.store.add_event(
                run.job, now=self.clock.now(), kind=kind, message=run.summary, data=marker
            )

    def _finish(self, run: _Run, code: int) -> None:
        job = run.job
        assert run.handle is not None
        usage = run.handle.sample()
        if run.launch is not None:
            usage = replace(usage, disk_bytes=outputs.tree_bytes(run.launch.workdir / "output"))
        values: dict[str, Any] = {
            "exit_code": code,
            "cpu_percent": usage.cpu_percent,
            "rss_bytes": usage.rss_bytes,
            "peak_rss_bytes": usage.peak_rss_bytes,
            "cpu_time_s": usage.cpu_time_s,
            "io_read_ops": usage.io_read_ops,
            "io_write_ops": usage.io_write_ops,
            "disk_bytes": usage.disk_bytes,
        }
        reason = run.stop_reason
        if reason == "lost":
            return  # the job is no longer ours: write nothing (fenced by the epoch anyway)
        if reason == "memory":
            target = JobState.FAILED
            limit = (run.memory_limit_bytes or 0) // (1024 * 1024)
            message = (
                f"Job used more memory than its environment's limit of {limit} MB and was killed."
            )
            values["error_type"] = ErrorType.MEMORY_LIMIT_EXCEEDED.value
        elif reason == "timeout":
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
            target, message = JobState.FAILED, messages.failed(code, tail, run.summary)
            values["error_type"] = ErrorType.ENTRYPOINT_COMMAND_ERROR.value
        self._complete_from(job, target, message=message, values=values)

    def _complete_from(
        self, job: Job, target: JobState, *, message: str, values: dict[str, Any]
    ) -> None:
        """End ``job`` in ``target``; if a cancel came first, end it cancelled instead.
        Every write is fenced by the lease epoch of this attempt."""
        now = self.clock.now()
        try:
            self._end(job, target, message=message, values=values, now=now)
            return
        except (errors.StaleState, errors.InvalidTransition):
            pass
        current = self.store.get_unscoped(job.id)
        if current is None or current.lease_epoch != job.lease_epoch:
            return
        if current.state is JobState.CANCELLING:
            values = {k: v for k, v in values.items() if k != "error_type"}
            self._end(
                current.evolve(started_at=job.started_at or current.started_at),
                JobState.CANCELLED,
                message=messages.cancelled(current.cancel_force),
                values={**values, "error_type": ErrorType.CANCELLED.value},
                now=now,
            )

    def _end(
        self, job: Job, target: JobState, *, message: str, values: dict[str, Any], now: datetime
    ) -> Job:
        """The fenced end of this attempt, requeued at once when its retry policy says so,
        and the attempt's record."""
        retry_plan = retry.plan(job, target, values.get("error_type"), now)
        with self.store.db.write() as conn:
            ended = self.store.transition(
                job,
                target,
                now=now,
                epoch=job.lease_epoch,
                message=message,
                values=values,
                retry=retry_plan,
                conn=conn,
            )
            self.tracking.record_attempt(
                conn,
                job,
                state=target.value,
                ended_at=now,
                exit_code=values.get("exit_code"),
                error_type=values.get("error_type"),
                message=message,
            )
        return ended

    def _request_stop(self, run: _Run, reason: str, *, force: bool) -> None:
        with self._lock:
            if run.stop_reason is not None and not (force and reason == "cancel"):
                return
            run.stop_reason = run.stop_reason or reason
            run.stop_force = run.stop_force or force
            run.cancel.set()
            handle = run.handle
        if handle is not None:  # else the setup thread sees the flag before starting
            self._stop_async(handle, 0.0 if force else self.settings.stop_grace_s, force)

    def _stop_async(self, handle: Handle, grace: float, force: bool) -> None:
        threading.Thread(
            target=self._stop_quietly, args=(handle, grace, force), name="jobyard-stop", daemon=True
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
                self._scan_all()
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
            late = [
                r
                for r in self._runs.values()
                if r.deadline is not None and now >= r.deadline and r.stop_reason is None
            ]
        for run in late:
            self._request_stop(run, "timeout", force=False)

    def _scan_all(self) -> None:
        with self._lock:
            runs = [r for r in self._runs.values() if r.handle is not None]
        for run in runs:
            self._scan(run)
            if run.log_limit and run.launch is not None:
                logs.cap(run.launch.log_path, run.log_limit)

    def _sample(self) -> None:
        with self._lock:
            runs = [r for r in self._runs.values() if r.handle is not None]
        for run in runs:
            assert run.handle is not None
            run.usage = run.handle.sample()
            limit = run.memory_limit_bytes
            if limit is not None and (run.usage.rss_bytes or 0) > limit:
                self._request_stop(run, "memory", force=True)

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
            sampled = []
            for run in runs.values():
                if run.handle is not None and run.launch is not None:
                    if run.usage.rss_bytes is None:  # started since the last sampling
                        run.usage = run.handle.sample()
                    run.usage = replace(
                        run.usage, disk_bytes=outputs.tree_bytes(run.launch.workdir / "output")
                    )
                    self.store.record_usage(run.job.id, run.job.lease_epoch, run.usage)
                    sampled.append((run.job, run.usage))
            self.tracking.add_samples(sampled, now)
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
                if run.handle is None or run.handle.wait(0) is None:  # running, but not ours
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
                message = (
                    messages.cancelled(job.cancel_force)
                    + " "
                    + messages.node_lost(job.lease_owner, why)
                )
                self._end(
                    job,
                    JobState.CANCELLED,
                    message=message,
                    values={"error_type": ErrorType.CANCELLED.value},
                    now=now,
                )
            else:
                self._end(
                    job,
                    JobState.FAILED,
                    message=messages.node_lost(job.lease_owner, why),
                    values={"error_type": ErrorType.NODE_LOST.value},
                    now=now,
                )
        except (errors.StaleState, errors.InvalidTransition):
            pass
