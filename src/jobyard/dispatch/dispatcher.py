"""The node's dispatcher: claims queued jobs into free slots, runs them through the
executor, keeps their leases alive, enforces timeouts and cancels, and fails the
jobs of nodes that died.

It composes the parts of ``dispatch/``: the claim loop (``claimer``), the attempts
and their runner (``attempt``), one exit waiter for all processes (``waiter``), the
supervisor (``supervisor``) and the pure decision of how an attempt ends
(``ending``). Threads: the claim loop, the waiter, the supervisor, and a setup
thread per job whose setup may take long.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from jobyard import errors
from jobyard.clock import Clock
from jobyard.dispatch import ending
from jobyard.dispatch.attempt import Attempt, AttemptRunner, Attempts
from jobyard.dispatch.claimer import ClaimLoop
from jobyard.dispatch.ending import StopReason
from jobyard.dispatch.fencing import check_lease_settings
from jobyard.dispatch.logship import LogShipper
from jobyard.dispatch.prepare import Preparer
from jobyard.dispatch.supervisor import Supervisor
from jobyard.dispatch.waiter import ExitWaiter
from jobyard.domain.jobs import Job
from jobyard.domain.states import JobState
from jobyard.executors.base import Executor, Gated, Handle
from jobyard.settings import Settings
from jobyard.storage import logs
from jobyard.storage.exitstatus import ExitStatus, read_exit_status
from jobyard.storage.logarchive import LogArchive
from jobyard.storage.workspace import Workspace
from jobyard.store.artifacts import ArtifactStore
from jobyard.store.claims import AttemptEnd, ClaimStore
from jobyard.store.jobs import JobStore
from jobyard.store.listen import queue_listener
from jobyard.store.nodes import NodeStore
from jobyard.store.tracking import TrackingStore

log = logging.getLogger("jobyard.dispatch")


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
        log_archive: LogArchive | None = None,
    ) -> None:
        check_lease_settings(settings)
        self.store = store
        self.claims = ClaimStore(store.db, store, half_life_s=settings.fair_share_half_life_s)
        self.nodes = nodes
        self.executor = executor
        self.workspace = workspace
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self.slots = max(1, settings.slots)
        self.attempts = Attempts(self.slots)
        self.runner = AttemptRunner(
            jobs=store,
            executor=executor,
            workspace=workspace,
            preparer=preparer,
            artifacts=artifacts,
            tracking=tracking,
            clock=clock,
            settings=settings,
            node_id=node_id,
            log_limit=log_limit,
            log_archive=log_archive,
        )
        #: copies running logs to the shared storage (only when logs are shared)
        self.log_shipper = (
            None
            if log_archive is None
            else LogShipper(
                attempts=self.attempts, runner=self.runner, interval_s=settings.log_sync_interval_s
            )
        )
        self.waiter: ExitWaiter[Attempt] = ExitWaiter(self._exited)
        self.claim_loop = ClaimLoop(
            attempts=self.attempts,
            runner=self.runner,
            claims=self.claims,
            clock=clock,
            settings=settings,
            node_id=node_id,
            watch=self._watch,
            accepting=executor.accepting if isinstance(executor, Gated) else lambda: True,
        )
        self.supervisor = Supervisor(
            attempts=self.attempts,
            runner=self.runner,
            claims=self.claims,
            nodes=nodes,
            tracking=tracking,
            clock=clock,
            settings=settings,
            node_id=node_id,
        )
        self._listener = queue_listener(store.db, self.job_queued)

    # ---- Wakeup -----------------------------------------------------------------------
    def job_queued(self) -> None:
        self.claim_loop.job_queued()

    def cancel_requested(self, job_id: str) -> None:
        a = self.attempts.get(job_id)
        if a is None:
            return
        job = self.store.get_unscoped(job_id)
        if job is not None and job.state is JobState.CANCELLING:
            self.runner.request_stop(a, StopReason.CANCEL, force=job.cancel_force)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.nodes.register(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            slots=self.slots,
            now=self.clock.now(),
        )
        self.reconcile()
        self.waiter.start()
        self.claim_loop.start()
        self.supervisor.start()
        if self.log_shipper is not None:
            self.log_shipper.start()
        if self._listener is not None:
            self._listener.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, stop the running jobs (they fail as NODE_LOST), and wait."""
        if self._listener is not None:
            self._listener.stop()
        self.claim_loop.stop_claiming()
        self.supervisor.stop(timeout)
        if self.log_shipper is not None:
            self.log_shipper.stop(timeout)
        for a in self.attempts.all():
            self.runner.request_stop(a, StopReason.SHUTDOWN, force=False)
        if not self.attempts.wait_empty(timeout):
            log.warning("%d jobs did not stop within %s s", len(self.attempts), timeout)
        self.claim_loop.stop(timeout)
        self.waiter.stop(timeout)
        self.executor.close()
        try:
            self.nodes.set_status(self.node_id, "stopped", self.clock.now())
        except errors.StoreUnavailable:
            log.warning("could not mark node %s stopped", self.node_id)

    def running_count(self) -> int:
        return len(self.attempts)

    def reconcile(self) -> None:
        """End the attempts this node ran in a previous life: with their real outcome
        when their process had exited and its exit status was recorded, else (killing
        leftover processes) failed as NODE_LOST, retried where the job allows it."""
        owned = self.claims.owned_by(self.node_id)
        # read before anything is killed: a status that the sweep's kill makes the
        # wrapper write is the restart's doing, not how the job ended
        statuses = {
            job.id: read_exit_status(self.workspace.exit_status_path(job.id, job.attempt))
            for job in owned
        }
        swept = self.executor.sweep()
        if swept:
            log.warning("killed %d processes a previous life of node %s left", swept, self.node_id)
        lost: list[Job] = []
        known: list[AttemptEnd] = []
        for job in owned:
            killed = False
            if job.pid and job.pid_create_time:
                killed = self.executor.kill_orphan(job.pid, job.pid_create_time)
            status = None if killed else statuses[job.id]
            end = None if status is None else self._ended_while_down(job, status)
            if end is None:
                lost.append(job)
            else:
                known.append(end)
        for job in owned:  # what their logs hold is all there will be
            self.runner.seal_log_of(job)
        if known:
            self.claims.end_attempts(known, self.clock.now())
        self.supervisor.fail_lost(lost, "the server restarted while the job ran")

    def _ended_while_down(self, job: Job, status: ExitStatus) -> AttemptEnd | None:
        """The end of an attempt whose process exited while no node watched it, as its
        exit status file says (with its results recorded); None for a job whose running
        mark was never written (``starting``): it counts as lost."""
        if job.state not in (JobState.RUNNING, JobState.CANCELLING):
            return None
        log.info("job %s: exited with code %d while the server was down", job.id, status.code)
        output_dir = self.workspace.workdir(job.id) / "output"
        if output_dir.is_dir():
            self.runner.collect_results_of(job, output_dir)
        log_path = self.workspace.log_path(job.id, job.attempt)
        outcome = ending.exited_unwatched(
            job, status.code, lambda: logs.last_lines(log_path, self.settings.log_tail_lines)
        )
        return AttemptEnd(
            job=job,
            target=outcome.target,
            message=outcome.message,
            error_type=outcome.error_type,
            exit_code=status.code,
            ended_at=status.at,
        )

    def reap_expired(self) -> None:
        """Fail (or finish cancelling) the jobs of other nodes whose lease expired."""
        self.supervisor.reap_expired()

    # ---- starts and exits ----------------------------------------------------------------
    def _watch(self, a: Attempt, handle: Handle) -> None:
        """A started attempt: the waiter waits for its exit, the supervisor ticks."""
        self.waiter.add(a, handle)
        self.supervisor.attempt_started()

    def _exited(self, batch: list[tuple[Attempt, int]]) -> None:
        """Finish the attempts whose processes exited; the claim loop writes their ends
        together in its next step."""
        done: list[tuple[Attempt, AttemptEnd | None]] = []
        for a, code in batch:
            try:
                done.append((a, self.runner.finish(a, code)))
            except Exception:  # the exit code is still a fact: write it
                log.exception("job %s: unexpected error after its exit", a.job.id)
                try:
                    end = self.runner.end_after_exit(a, code, ended_at=self.clock.now())
                except Exception:
                    log.exception("job %s: its end could not be made", a.job.id)
                    end = None
                done.append((a, end))
        self.claim_loop.ended(done)
