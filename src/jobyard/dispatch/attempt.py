"""One attempt of a job on this node: its state in memory, how it is set up and
started, how it is stopped, and what is done after its process exits (last marker
scan, results, the end to write)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import ending, outputs
from jobyard.dispatch.ending import Outcome, StopReason
from jobyard.dispatch.prepare import Preparer, SetupError
from jobyard.dispatch.scanner import LogScanner
from jobyard.domain import tracking
from jobyard.domain.jobs import Job, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.executors.base import (
    Executor,
    ExecutorFailure,
    Handle,
    LaunchSpec,
    Parking,
    Parks,
    ReportsFailure,
)
from jobyard.settings import Settings
from jobyard.storage import logs
from jobyard.storage.logarchive import LogArchive
from jobyard.storage.workspace import Workspace
from jobyard.store.artifacts import ArtifactStore
from jobyard.store.claims import AttemptEnd
from jobyard.store.database import on_disk
from jobyard.store.jobs import JobStore
from jobyard.store.tracking import TrackingStore

log = logging.getLogger("jobyard.dispatch")


@dataclass
class Attempt:
    job: Job
    token: str = ""  #: the job token of this attempt (only its hash is stored)
    handle: Handle | None = None  #: None while the job is being set up
    launch: LaunchSpec | None = None
    started_mono: float = 0.0  #: monotonic time the process started
    started_at: datetime | None = None  #: when the process started (the job's started_at)
    deadline: datetime | None = None
    memory_limit_bytes: int | None = None
    stop_reason: StopReason | None = None
    stop_force: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    scanner: LogScanner | None = None
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    summary: str | None = None  #: what a notebook runner said about its failed cells
    log_limit: int = 0  #: bytes of log kept for this attempt (0: unlimited)
    scan_lock: threading.Lock = field(default_factory=threading.Lock)
    #: monotonic time read before the latest write of this attempt's lease (claim or
    #: renewal) that committed: the lease lasts until at least then + lease_ttl_s
    renewed_mono: float = field(default_factory=time.monotonic)
    fenced: bool = False  #: stopped by this node's self-fencing
    fenced_after_s: float = 0.0  #: how long its lease had gone without renewal then
    exit_code: int | None = None  #: once its process exited
    results_pending: bool = False  #: its results could not be recorded yet (no database)
    shipped: int = 0  #: bytes of its log copied to the shared storage so far
    sealed: bool = False  #: its whole log is on the shared storage (no more shipping)
    ship_lock: threading.Lock = field(default_factory=threading.Lock)
    #: waits until the claim of this attempt is on disk (StoreUnavailable if it cannot
    #: be): its process starts only then, while its setup overlaps the sync
    claim_synced: Callable[[], None] = on_disk


class Attempts:
    """The attempts this node runs (thread-safe). A job has one, except for a moment
    when it was claimed again (its lease lost, retried at once) while the process of its
    previous attempt still exits: then :meth:`get` answers the newest, and each attempt
    is removed only by its own end (:meth:`remove` compares identity)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._runs: list[Attempt] = []
        self._cond = threading.Condition()
        self._on_add: list[Callable[[Attempt], None]] = []

    def on_add(self, callback: Callable[[Attempt], None]) -> None:
        """Call ``callback(attempt)`` after each :meth:`add` (in the adding thread)."""
        self._on_add.append(callback)

    def add(self, attempt: Attempt) -> None:
        with self._cond:
            self._runs.append(attempt)
        for callback in self._on_add:
            callback(attempt)

    def remove(self, attempt: Attempt) -> None:
        """Remove this attempt (never a newer attempt of the same job)."""
        with self._cond:
            self._runs = [a for a in self._runs if a is not attempt]
            self._cond.notify_all()

    def get(self, job_id: str) -> Attempt | None:
        """The newest attempt of the job on this node, or None."""
        with self._cond:
            return next((a for a in reversed(self._runs) if a.job.id == job_id), None)

    def all(self) -> list[Attempt]:
        with self._cond:
            return list(self._runs)

    def __len__(self) -> int:
        with self._cond:
            return len(self._runs)

    def free_slots(self, excluding: Collection[Attempt] = ()) -> int:
        """Slots not taken by attempts (those of ``excluding`` count as free)."""
        gone = {id(a) for a in excluding}
        with self._cond:
            taken = sum(a.job.spec.slots for a in self._runs if id(a) not in gone)
        return self.slots - taken

    def wait_empty(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._runs, timeout)


def needs_setup_thread(job: Job) -> bool:
    """Whether setting the job up may take long (artifacts, inputs, packages, a Python
    environment): then it is prepared in a thread of its own, not in the claim loop."""
    s = job.spec
    return bool(
        s.model_version_id
        or s.environment_id
        or s.input_folder_id
        or s.input_bindings
        or s.packages
        or s.inputs_sha256
    )


class AttemptRunner:
    """Sets attempts up, starts, stops and finishes them; writes nothing but events,
    reports and results (the ends are returned as :class:`AttemptEnd`)."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        executor: Executor,
        workspace: Workspace,
        preparer: Preparer,
        artifacts: ArtifactStore,
        tracking: TrackingStore,
        clock: Clock,
        settings: Settings,
        node_id: str,
        log_limit: Callable[[str], int],
        log_archive: LogArchive | None = None,
    ) -> None:
        self.jobs = jobs
        self.log_archive = log_archive
        self.executor = executor
        self.workspace = workspace
        self.preparer = preparer
        self.artifacts = artifacts
        self.tracking = tracking
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.log_limit = log_limit
        self._lock = threading.Lock()

    # ---- start ---------------------------------------------------------------------------
    def launch(self, a: Attempt) -> AttemptEnd | None:
        """Set the attempt up and start its process (``a.handle`` is set then); else the
        end to write (None: nothing to write, the job is no longer ours)."""
        job = a.job
        try:
            prepared = self.preparer.prepare(
                job,
                a.cancel,
                lambda line: self.say(a, line),
                a.token,
                lambda text: self.setup_stage(a, text),
            )
        except SetupError as e:
            self.say(a, f"jobyard: {e.message}")
            return self._unstarted(a, ending.setup_failed(e.message, e.error_type))
        if a.stop_reason is not None:
            return self._unstarted(a, ending.setup_failed("", ""))
        a.launch = prepared.launch
        a.memory_limit_bytes = prepared.memory_limit_bytes
        a.log_limit = self.log_limit(job.tenant_id)
        a.scanner = LogScanner(prepared.launch.log_path)
        try:
            a.claim_synced()
        except errors.StoreUnavailable as e:  # a power failure could undo the claim
            self.say(a, f"jobyard: {e.message}")
            return self._unstarted(a, ending.start_failed(e.message))
        try:
            handle = self.executor.start(prepared.launch)
        except errors.ExecutorError as e:
            return self._unstarted(a, ending.start_failed(e.message))
        now = self.clock.now()
        with self._lock:
            a.handle = handle
            a.started_mono = time.monotonic()
            a.started_at = now
            timeout = job.spec.timeout_s
            a.deadline = now + timedelta(seconds=timeout) if timeout else None
            pending = a.stop_reason
        if pending is not None:  # a stop arrived while the process was being started
            self._stop_async(
                handle, 0.0 if a.stop_force else self.settings.stop_grace_s, a.stop_force
            )
        return None

    def _make_spare(self) -> None:
        """Make the next job's directory ahead (best effort: without one, the next job
        makes its own)."""
        try:
            self.workspace.make_spare()
        except OSError as e:
            log.info("the next job's directory could not be made ahead: %s", e)

    def park(self) -> None:
        """A slot is idle: let the executor start the next job's process ahead in the
        spare job directory (executors that can, when there is a spare)."""
        if not isinstance(self.executor, Parks):
            return
        work = self.workspace.spare_workdir()
        if work is not None:
            logs = work.parent / "logs"
            self.executor.park(
                Parking(
                    workdir=work,
                    log_path=logs / ".parked.log",
                    status_path=logs / ".parked.exit",
                    user=self.preparer.run_as_user,
                    renames=self.workspace.spare_renames,
                )
            )

    def failed_to_start(self, a: Attempt, error: Exception) -> AttemptEnd | None:
        """The end of an attempt whose setup raised an unexpected error (the node's
        disk refused the job's files, a bug): failed with the error, retried where the
        job allows it (None: not ours any more)."""
        reason = f"{type(error).__name__}: {error}"
        self.say(a, f"jobyard: the job could not be set up on node {self.node_id}: {reason}")
        return self._unstarted(a, ending.start_failed(reason))

    def _unstarted(self, a: Attempt, failure: Outcome) -> AttemptEnd | None:
        self.seal_log(a)
        outcome = ending.unstarted(
            a.stop_reason,
            failure,
            node_id=self.node_id,
            cancel_force=a.stop_force,
            fenced_after_s=a.fenced_after_s,
        )
        return None if outcome is None else self._end_of(a, outcome)

    def setup_stage(self, a: Attempt, text: str) -> None:
        """A ``setup`` event: what the setup of the attempt does now (clients show it
        while the job is ``starting``). Best effort: a refused write only loses it."""
        try:
            self.jobs.add_event(
                a.job, now=self.clock.now(), kind="setup", message=text, data={"stage": text}
            )
        except errors.JobyardError as e:
            log.info("job %s: setup stage %r not recorded: %s", a.job.id, text, e)

    def say(self, a: Attempt, line: str) -> None:
        """Append a line of jobyard's own to the attempt's log (a full disk only loses
        the line)."""
        self.say_to(a.job, line)

    def say_to(self, job: Job, line: str) -> None:
        path = self.workspace.log_path(job.id, job.attempt)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(line.rstrip("\n") + "\n")
        except OSError as e:
            log.warning("job %s: could not write to its log: %s", job.id, e)

    # ---- stop ----------------------------------------------------------------------------
    def request_stop(self, a: Attempt, reason: StopReason, *, force: bool) -> None:
        """Stop the attempt (the first reason wins; a forced cancel still escalates)."""
        with self._lock:
            escalate = force and reason in (StopReason.CANCEL, StopReason.FENCED)
            if a.stop_reason is not None and not escalate:
                return
            a.stop_reason = a.stop_reason or reason
            a.stop_force = a.stop_force or force
            a.cancel.set()
            handle = a.handle
        if handle is not None:  # else the setup sees the flag before starting
            self._stop_async(handle, 0.0 if force else self.settings.stop_grace_s, force)

    def _stop_async(self, handle: Handle, grace: float, force: bool) -> None:
        threading.Thread(
            target=_stop_quietly, args=(handle, grace, force), name="jobyard-stop", daemon=True
        ).start()

    # ---- after the exit -------------------------------------------------------------------
    def finish(self, a: Attempt, code: int) -> AttemptEnd | None:
        """After the process exited with ``code``: kill what it left behind, apply its
        last markers, keep its results; the end to write (None: not ours any more).

        The exit code and time are facts: whatever fails on the way (the database, a
        full disk) is logged and the end is still returned; results that could not be
        recorded for want of the database are marked pending (the claim loop records
        them before it writes the end)."""
        assert a.handle is not None
        ended_at = self.clock.now()
        a.exit_code = code
        # the next job's directory, made now: made while this one started, it slowed
        # that start (the journal's locks, the CPU), and a job that ends frees a slot
        self._make_spare()
        self._quietly(a, "cleaning up its processes", a.handle.cleanup)
        launch = a.launch
        log_end = None if launch is None else _size_or_none(launch.log_path)
        try:
            self.scan(a, log_end)
        except errors.StoreUnavailable as e:
            log.warning("job %s: its last reports could not be recorded: %s", a.job.id, e)
        if a.log_limit and launch is not None and (log_end is None or log_end > a.log_limit):
            self._quietly(a, "capping its log", lambda: logs.cap(launch.log_path, a.log_limit))
        if a.stop_reason is StopReason.LOST:
            self.seal_log(a)
            return None
        if a.stop_reason is None and a.handle.oom_killed():
            a.stop_reason = StopReason.MEMORY  # the kernel enforced the limit
        notes = []
        processes = a.handle.pids_exhausted()
        if processes is not None and code != 0:
            notes.append(f"it reached its limit of {processes} processes, so some forks failed")
        if code != 0 and a.launch is not None and logs.disk_full(a.launch.log_path):
            notes.append("its output could not be written: the disk that holds its log is full")
        if notes:
            a.summary = "; ".join([a.summary, *notes] if a.summary else notes)
        # one read of output/ for the results and the disk figure
        files = [] if launch is None else outputs.regular_files(launch.workdir / "output")
        try:
            self.collect_results(a, files)
        except errors.StoreUnavailable as e:
            log.warning("job %s: results wait for the database: %s", a.job.id, e)
            a.results_pending = True
        sealed = self.seal_log(a)
        usage = a.handle.sample()
        if launch is not None:
            usage = replace(usage, disk_bytes=outputs.files_bytes(files))
            if sealed and not a.results_pending:
                self._drop_workdir(a.job, launch.workdir)
        failure = a.handle.failure() if _reports_failure(a.handle) else None
        return self.end_after_exit(a, code, ended_at=ended_at, usage=usage, failure=failure)

    def end_after_exit(
        self,
        a: Attempt,
        code: int,
        *,
        ended_at: datetime,
        usage: ResourceUsage | None = None,
        failure: ExecutorFailure | None = None,
    ) -> AttemptEnd | None:
        """The end of the attempt whose process exited with ``code`` at ``ended_at``."""
        job = a.job
        outcome = ending.after_exit(
            a.stop_reason,
            code,
            job=job,
            node_id=self.node_id,
            memory_limit_bytes=a.memory_limit_bytes,
            log_tail=lambda: logs.last_lines(
                self.workspace.log_path(job.id, job.attempt), self.settings.log_tail_lines
            ),
            summary=a.summary,
            cancel_force=a.stop_force,
            fenced_after_s=a.fenced_after_s,
            failure=failure,
        )
        if outcome is None:
            return None
        return self._end_of(a, outcome, exit_code=code, usage=usage, ended_at=ended_at)

    @staticmethod
    def _quietly(a: Attempt, what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            log.exception("job %s: %s failed", a.job.id, what)

    def _end_of(
        self,
        a: Attempt,
        outcome: Outcome,
        *,
        exit_code: int | None = None,
        usage: ResourceUsage | None = None,
        ended_at: datetime | None = None,
    ) -> AttemptEnd:
        job = a.job
        if outcome.target is JobState.CANCELLED and job.state is not JobState.CANCELLING:
            job = job.evolve(state=JobState.CANCELLING)  # a cancel stop: the row is cancelling
        return AttemptEnd(
            job=job,
            target=outcome.target,
            message=outcome.message,
            error_type=outcome.error_type,
            exit_code=exit_code,
            usage=usage,
            ended_at=ended_at,
        )

    def collect_results(self, a: Attempt, files: list[tuple[str, Path]] | None = None) -> None:
        """Record the attempt's results (see :meth:`collect_results_of`); nothing for
        an attempt that never started."""
        if a.launch is not None:
            self.collect_results_of(a.job, a.launch.workdir / "output", files)
            a.results_pending = False

    def collect_results_of(
        self, job: Job, output_dir: Path, files: list[tuple[str, Path]] | None = None
    ) -> None:
        """Record the output directory's files as results (also after a failure or a
        cancel: what was written is kept) and upload them to the output folder. Raises
        StoreUnavailable (to be retried); other failures are logged and said in the log:
        results are best effort, the job's outcome stands. ``files``: the directory's
        ``outputs.regular_files``, when read already."""
        try:
            roles = self.preparer.output_roles(job)
            found = outputs.collect(
                job_id=job.id,
                output_dir=output_dir,
                blobs=self.preparer.blobs,
                roles=roles,
                now=self.clock.now(),
                files=files,
            )
            if found or job.attempt > 1:  # a retry replaces the previous attempt's results
                self.artifacts.replace(job.tenant_id, job.id, found, epoch=job.lease_epoch)
            folder = self.preparer.output_folder(job)
            if folder is not None and found:
                self.preparer.folders.ingest(folder, output_dir)
        except errors.StoreUnavailable:
            raise
        except errors.StaleState as e:  # fenced: the attempt no longer holds its job
            log.info("job %s: results of attempt %s dropped: %s", job.id, job.attempt, e)
        except Exception as e:  # results are best effort; the job's outcome stands
            log.exception("job %s: results could not be recorded", job.id)
            self.say_to(job, f"jobyard: results could not be recorded: {e}")

    # ---- the log on the shared storage ----------------------------------------------------
    def ship_log(self, a: Attempt) -> None:
        """Copy what the running attempt's log gained since the last call to the shared
        storage (nothing when logs are not shared, or the log did not grow). Beyond the
        tenant's log limit nothing is shipped: the sealed log has the truncation note."""
        archive = self.log_archive
        if archive is None or a.launch is None:
            return
        path = a.launch.log_path
        end = logs.size(path)
        if a.log_limit:
            end = min(end, a.log_limit)
        if end <= a.shipped:
            return
        with a.ship_lock:
            if not a.sealed:
                a.shipped = archive.ship(a.job.id, a.job.attempt, path, a.shipped, end)

    def seal_log(self, a: Attempt) -> bool:
        """Store the ended attempt's whole log on the shared storage (best effort: a
        failure is logged, the log stays on this node and its shipped part on the
        storage); whether it is there now."""
        with a.ship_lock:
            if a.sealed:
                return False
            a.sealed = True
        return self.seal_log_of(a.job, shipped=a.shipped > 0)

    def seal_log_of(self, job: Job, *, shipped: bool = True) -> bool:
        """Store the attempt's whole log on the shared storage (``shipped``: segments
        of it may be there, to be removed); whether it is there now."""
        archive = self.log_archive
        if archive is None:
            return False
        try:
            path = self.workspace.log_path(job.id, job.attempt)
            archive.seal(job.id, job.attempt, path, shipped=shipped)
        except Exception:
            log.exception("job %s: its log could not be stored on the shared storage", job.id)
            return False
        return True

    @staticmethod
    def _drop_workdir(job: Job, workdir: Path) -> None:
        """Remove an ended attempt's working directory once what the job left is on the
        shared storage (its log sealed there, its outputs recorded as results): on a
        node of many, nothing reads it any more, and ended jobs' inputs, artifacts and
        outputs would pile up on every node. The node's own log and exit status stay
        (small; its API reads them), and a retry prepares a new directory anyway."""
        try:
            shutil.rmtree(workdir)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("job %s: its working directory could not be removed: %s", job.id, e)

    # ---- markers ---------------------------------------------------------------------------
    def scan_if_grown(self, a: Attempt) -> None:
        """Scan the log for markers (and cap it) only when it grew since the last scan."""
        if a.scanner is None or a.launch is None:
            return
        if logs.size(a.launch.log_path) <= a.scanner.offset:
            return
        self.scan(a)
        if a.log_limit:
            logs.cap(a.launch.log_path, a.log_limit)

    def scan(self, a: Attempt, log_end: int | None = None) -> None:
        """Apply the marker lines the job printed since the last scan. The supervisor and
        the exit handling both scan; one at a time, so the last scan (before the job's
        end is written) waits for a running one to finish applying. The writes are
        fenced by the attempt's lease epoch: those of an attempt that no longer holds
        its job are dropped (logged at info). ``log_end``: the log's size, when known
        (a log that did not grow beyond what was scanned is not opened)."""
        if a.scanner is None:
            return
        with a.scan_lock:
            if log_end is not None and log_end <= a.scanner.offset:
                return
            for marker in a.scanner.poll():
                try:
                    self._apply_marker(a, marker)
                except errors.StaleState as e:
                    log.info("job %s: marker of attempt %s dropped: %s", a.job.id, a.job.attempt, e)

    def _apply_marker(self, a: Attempt, marker: dict[str, Any]) -> None:
        kind = marker["type"]
        if kind in ("cell", "paragraph"):
            index = marker.get("index")
            status = marker.get("status", "")
            error = f": {marker['error']}" if marker.get("error") else ""
            title = f" ({marker['title']})" if marker.get("title") else ""
            text = f"{kind.capitalize()} {index}{title} {status}{error}"
            self.jobs.add_event(a.job, now=self.clock.now(), kind=kind, message=text, data=marker)
        elif kind in tracking.REPORT_TYPES:
            try:
                report = tracking.parse_report(marker)
                self.tracking.apply(a.job.id, [report], self.clock.now(), epoch=a.job.lease_epoch)
            except errors.StaleState:
                raise
            except errors.JobyardError as e:  # a malformed marker is output, not a failure
                log.info("job %s: marker ignored: %s", a.job.id, e)
        elif kind in ("notebook", "note"):
            a.summary = str(marker.get("message") or "") or None
            self.jobs.add_event(
                a.job, now=self.clock.now(), kind=kind, message=a.summary, data=marker
            )


def _size_or_none(path: Path) -> int | None:
    """The file's size (0 if it is missing), None if it cannot be read."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
    except OSError:
        return None


_REPORTS_FAILURE: dict[type, bool] = {}


def _reports_failure(handle: Handle) -> TypeGuard[ReportsFailure]:
    """``isinstance(handle, ReportsFailure)``, once per handle type (a runtime-checkable
    protocol's check costs ≈ 8 µs)."""
    kind = type(handle)
    known = _REPORTS_FAILURE.get(kind)
    if known is None:
        known = _REPORTS_FAILURE[kind] = isinstance(handle, ReportsFailure)
    return known


def _stop_quietly(handle: Handle, grace: float, force: bool) -> None:
    try:
        handle.stop(grace, force=force)
    except Exception:
        log.exception("stopping pid %s failed", handle.pid)
