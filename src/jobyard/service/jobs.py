"""Job use cases: submit, read, list, cancel, retry and delete."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from jobyard import errors
from jobyard.clock import Clock, ensure_utc
from jobyard.domain import priorities, states
from jobyard.domain.auth import ROLE_RANK, Principal, Role
from jobyard.domain.jobs import DEFAULT_PROJECT_ID, Job, JobEvent, JobFilter, JobSpec, PlainSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.service import submission
from jobyard.service.limits import Quotas, queued_quota_exceeded
from jobyard.service.wakeup import Wakeup
from jobyard.storage.blobs import BlobStore
from jobyard.storage.logarchive import JobLogs
from jobyard.store.jobs import JobStore, NewBatch, NewJob, NewPlainJob, new_job_ids

if TYPE_CHECKING:  # the services of the get route's names (no import cycle)
    from jobyard.service.folders import FolderService
    from jobyard.service.registry import RegistryService

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV_PREFIX = "JOBYARD_"
MAX_LIST_LIMIT = 500
MAX_ITEMS = 100_000
MAX_BATCH = 1000
#: an immediate retry jumps ahead of jobs this many aging steps old
IMMEDIATE_LEAD = 4


class Accepted(NamedTuple):
    """A plain job a batch created (:class:`PlainSpec`): what its answer says of it."""

    id: str
    state: JobState


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchResult:
    """One job of a batch: the job (created or found by its idempotency key; a plain job
    created: its id and state), or why not."""

    job: Job | Accepted | None = None
    created: bool = False
    error: errors.JobyardError | None = None


#: a job of a batch: to insert (with its request, or plain), or already answered
_Planned = tuple[submission.JobRequest, NewJob] | NewPlainJob | BatchResult


@dataclass(frozen=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None
    by_status: dict[str, int]


@dataclass(frozen=True)
class OffsetPage:
    """Jobs from a position in the list, how many match and the counts by state."""

    items: list[Job]
    total: int
    by_status: dict[str, int]


class JobService:
    def __init__(
        self,
        *,
        store: JobStore,
        log_files: JobLogs,
        clock: Clock,
        wakeup: Wakeup,
        aging_step_s: float,
        registry: submission.Registry,
        folders: submission.Folders,
        blobs: BlobStore,
        validate_notifications: Callable[[Any], dict[str, Any]],
        audit: Callable[[Principal, str, str, Mapping[str, Any]], None],
        quotas: Quotas,
    ) -> None:
        self.store = store
        self.log_files = log_files
        self.clock = clock
        self.wakeup = wakeup
        self.aging_step_s = aging_step_s
        self.registry = registry
        self.folders = folders
        self.blobs = blobs
        self.validate_notifications = validate_notifications
        self.audit = audit
        self.quotas = quotas
        #: the last (eligible time, priority, scheduled) and its (sort key, message)
        self._last_place: tuple[tuple[Any, ...], tuple[float, str]] = ((), (0.0, ""))

    # ---- submit --------------------------------------------------------------------
    def submit_request(
        self, principal: Principal, request: submission.JobRequest
    ) -> tuple[Job, bool]:
        """Resolve the request's model, environment and folders, then accept it; returns
        (job, created). With an idempotency key, a request sent before under that key
        answers its job (see :meth:`_replayed`), even if what it names changed since."""
        digest = self._digest(principal, request)
        if request.spec.idempotency_key is not None:
            existing = self.store.find_by_idempotency_key(
                principal.tenant_id, request.spec.idempotency_key
            )
            if existing is not None:
                return self._replayed(principal, request, digest, existing), False
        request = self._notified(request)
        spec = self._resolve(principal, request)
        new = self._new_job(principal, spec, immediate=request.immediate, request_hash=digest)
        return self._insert(principal, request, new)

    @staticmethod
    def _digest(principal: Principal, request: submission.JobRequest) -> str | None:
        """The hash of an idempotent request as sent (only those are ever compared)."""
        if request.spec.idempotency_key is None:
            return None
        return submission.request_hash(request, principal.project_id)

    def _notified(self, request: submission.JobRequest) -> submission.JobRequest:
        """``request`` with its notifications checked and normalised."""
        if request.spec.notifications is None:
            return request
        notifications = self.validate_notifications(request.spec.notifications)
        return replace(request, spec=replace(request.spec, notifications=notifications))

    def _resolve(self, principal: Principal, request: submission.JobRequest) -> JobSpec:
        """The spec of a request with its references resolved and its batch items stored."""
        spec = submission.resolve(request, principal, self.registry, self.folders)
        items = submission.input_items(request, principal, self.folders)
        if items is not None:
            spec = self._store_inputs(spec, items)
        return spec

    def submit_batch(
        self,
        principal: Principal,
        requests: Sequence[submission.JobRequest | PlainSpec | errors.JobyardError],
    ) -> list[BatchResult]:
        """Accept up to ``MAX_BATCH`` jobs in one transaction, each with its own outcome
        (a request that is already an error keeps it). Idempotency keys count per job:
        a key used before (or earlier in the batch) answers with that job when the
        request is the same (see :meth:`_replayed`). A :class:`PlainSpec` is accepted
        as a ``JobRequest`` of the same fields is, without building its ``JobSpec``."""
        if len(requests) > MAX_BATCH:
            raise errors.InvalidInput(f"jobs: at most {MAX_BATCH} per batch", field="jobs")
        planned = self._plan(principal, requests)
        fresh = [
            p if isinstance(p, NewPlainJob) else p[1]
            for p in planned
            if not isinstance(p, BatchResult)
        ]
        seqs = self.store.insert_many(fresh)  # in fresh's order
        lost = [
            n.spec.idempotency_key
            for n, seq in zip(fresh, seqs, strict=True)
            if seq is None and isinstance(n, NewJob) and n.spec.idempotency_key is not None
        ]
        existing = self.store.find_by_idempotency_keys(principal.tenant_id, lost) if lost else {}
        results: list[BatchResult] = []
        stored = iter(seqs)
        queued = False
        for p in planned:
            if isinstance(p, BatchResult):
                results.append(p)
                continue
            seq = next(stored)
            if seq is not None:
                if isinstance(p, NewPlainJob):
                    job: Job | Accepted = Accepted(p.id, p.state)
                else:
                    job = p[1].job(seq)
                queued = queued or job.state is JobState.QUEUED
                results.append(BatchResult(job=job, created=True))
                continue
            try:
                if isinstance(p, NewPlainJob):  # no key: not found when read back by id
                    raise _not_stored()
                request, new = p
                found = existing.get(str(new.spec.idempotency_key))
                if found is None:
                    raise _not_stored()
                job = self._replayed(principal, request, new.request_hash, found)
                results.append(BatchResult(job=job))
            except errors.JobyardError as e:
                results.append(BatchResult(error=e))
        if queued:
            self.wakeup.job_queued()
        return results

    def _plan(
        self,
        principal: Principal,
        requests: Sequence[submission.JobRequest | PlainSpec | errors.JobyardError],
    ) -> list[_Planned]:
        """Each request of a batch as a job to insert, or its result (a job found by its
        key, an error); the waiting-jobs quota counted over the batch."""
        keys = [
            r.spec.idempotency_key
            for r in requests
            if isinstance(r, submission.JobRequest) and r.spec.idempotency_key is not None
        ]
        before = self.store.find_by_idempotency_keys(principal.tenant_id, keys) if keys else {}
        quota = self.quotas.queued_room(principal.tenant_id)
        room = quota[0] if quota is not None else None
        now = self.clock.now()  # one time for the batch: its jobs queue in its order (seq)
        shared = NewBatch(
            principal.tenant_id,
            now,
            principal.key_name,
            principal.key_id,
            principal.project_id or DEFAULT_PROJECT_ID,
        )
        planned: list[_Planned] = []
        # the plain jobs' ids in ascending order, taken in the batch's order (new_job_ids)
        ids = iter(new_job_ids(sum(type(r) is PlainSpec for r in requests)))
        for request in requests:
            if isinstance(request, errors.JobyardError):
                planned.append(BatchResult(error=request))
                continue
            try:
                new: _Planned
                if type(request) is PlainSpec:
                    new = self._new_plain(request, shared, next(ids))
                else:
                    assert isinstance(request, submission.JobRequest)
                    digest = self._digest(principal, request)
                    key = request.spec.idempotency_key
                    found = before.get(key) if key is not None else None
                    if found is not None:
                        job = self._replayed(principal, request, digest, found)
                        planned.append(BatchResult(job=job))
                        continue
                    spec = self._resolve(principal, self._notified(request))
                    new = (
                        request,
                        self._new_job(
                            principal,
                            spec,
                            immediate=False,
                            request_hash=digest,
                            check_quota=False,
                            now=now,
                        ),
                    )
                if quota is not None and room is not None:
                    if room <= 0:
                        raise queued_quota_exceeded(quota[1])
                    room -= 1
                planned.append(new)
            except errors.JobyardError as e:
                planned.append(BatchResult(error=e))
        return planned

    def _new_plain(self, spec: PlainSpec, shared: NewBatch, job_id: str) -> NewPlainJob:
        """:meth:`_new_job` of a plain job of a batch (``shared``: the batch's caller and
        time) with the id ``job_id``: the same checks, first state and queue place."""
        _validate(spec)
        scheduled_at = ensure_utc(spec.scheduled_at)
        if scheduled_at is not spec.scheduled_at:
            spec = spec._replace(scheduled_at=scheduled_at)
        now = shared.now
        scheduled = scheduled_at is not None and scheduled_at > now
        state = JobState.SCHEDULED if scheduled else JobState.QUEUED
        eligible = scheduled_at if scheduled and scheduled_at else now
        sort_key, message = self._place(eligible, spec.priority, scheduled)
        return NewPlainJob(job_id, spec, state, sort_key, message, shared)

    def _store_inputs(self, spec: JobSpec, items: list[Any]) -> JobSpec:
        if len(items) > MAX_ITEMS:
            raise errors.InvalidInput(f"inputs: at most {MAX_ITEMS} items", field="inputs")
        body = b"".join(json.dumps(i, sort_keys=True).encode() + b"\n" for i in items)
        sha, size = self.blobs.put_stream([body])
        return replace(spec, inputs_sha256=sha, input_bytes=size, items_total=len(items))

    def submit(
        self, principal: Principal, spec: JobSpec, *, immediate: bool = False
    ) -> tuple[Job, bool]:
        """Accept a job whose spec names nothing to resolve; returns (job, created).
        Idempotent on ``spec.idempotency_key`` like :meth:`submit_request`."""
        request = submission.JobRequest(spec=spec, immediate=immediate)
        digest = self._digest(principal, request)
        if spec.idempotency_key is not None:
            existing = self.store.find_by_idempotency_key(principal.tenant_id, spec.idempotency_key)
            if existing is not None:
                return self._replayed(principal, request, digest, existing), False
        new = self._new_job(principal, spec, immediate=immediate, request_hash=digest)
        return self._insert(principal, request, new)

    def _insert(
        self, principal: Principal, request: submission.JobRequest, new: NewJob
    ) -> tuple[Job, bool]:
        job, created = self.store.insert(
            tenant_id=new.tenant_id,
            spec=new.spec,
            state=new.state,
            sort_key=new.sort_key,
            now=new.now,
            request_hash=new.request_hash,
            message=new.message,
        )
        if not created:  # another submit with the key committed first
            return self._replayed(principal, request, new.request_hash, job), False
        return self._created(job), True

    async def submit_plain(
        self, principal: Principal, request: submission.JobRequest
    ) -> tuple[Job, bool] | None:
        """:meth:`submit_request` without leaving the event loop, for a request that needs
        nothing read from the database first (no model, environment, folders, batch
        inputs, notifications or idempotency key, and no waiting-jobs quota to count).
        None when the request is not such a one: call :meth:`submit_request` instead."""
        if not request.is_plain or not self.quotas.queued_check_is_free(principal.tenant_id):
            return None
        new = self._new_job(principal, request.spec, immediate=request.immediate, request_hash=None)
        job, created = await self.store.insert_async(new)  # no key: always created
        return (self._created(job) if created else job), created

    def _new_job(
        self,
        principal: Principal,
        spec: JobSpec,
        *,
        immediate: bool,
        request_hash: str | None,
        check_quota: bool = True,
        now: datetime | None = None,
    ) -> NewJob:
        """Validate ``spec`` for this caller and decide its first state and queue place
        (at ``now``, a batch's one time, else the clock's)."""
        _validate(spec)
        spec = spec.evolve(
            submitted_by=principal.key_name,
            submitted_key_id=principal.key_id,
            project_id=principal.project_id or spec.project_id,
            scheduled_at=ensure_utc(spec.scheduled_at),
        )
        if check_quota:
            self.quotas.check_queued(principal.tenant_id)
        if now is None:
            now = self.clock.now()
        scheduled = spec.scheduled_at is not None and spec.scheduled_at > now
        state = JobState.SCHEDULED if scheduled else JobState.QUEUED
        eligible = spec.scheduled_at if scheduled and spec.scheduled_at else now
        sort_key, message = self._place(eligible, spec.priority, scheduled)
        return NewJob(
            tenant_id=principal.tenant_id,
            spec=spec,
            state=state,
            sort_key=sort_key - (IMMEDIATE_LEAD * self.aging_step_s if immediate else 0),
            now=now,
            request_hash=request_hash,
            message=message,
        )

    def _place(self, eligible: datetime, priority: Priority, scheduled: bool) -> tuple[float, str]:
        """The queue sort key and the first event's message of a job eligible at
        ``eligible`` (UTC). The last answer is kept: a batch's jobs share one time, or
        often one ``scheduled_at`` (≈ 1 µs a job of a batch)."""
        asked = (eligible, priority, scheduled)
        last = self._last_place  # one tuple, read and replaced whole: safe between threads
        if last[0] == asked:
            return last[1]
        placed = (
            priorities.sort_key(eligible, priority, self.aging_step_s),
            f"Job scheduled for {eligible.isoformat()}."
            if scheduled
            else "Job submitted and queued.",
        )
        self._last_place = (asked, placed)
        return placed

    def _created(self, job: Job) -> Job:
        if job.state is JobState.QUEUED:
            self.wakeup.job_queued()
        return job

    def _replayed(
        self,
        principal: Principal,
        request: submission.JobRequest,
        digest: str | None,
        job: Job,
    ) -> Job:
        """The job that holds ``request``'s idempotency key, when ``request`` is the one
        it was accepted for; else IdempotencyConflict. The one comparison of idempotent
        requests: by the hash of the request as sent, or for a row stored before that
        hash (64 hex digits of the resolved spec's), by that hash of the request resolved
        again (a reference that no longer resolves counts as a different request)."""
        stored = job.request_hash
        if stored is not None and digest is not None:
            if stored == digest:
                return job
            if not stored.startswith(submission.REQUEST_HASH_PREFIX):
                try:
                    if stored == self._legacy_hash(principal, request):
                        return job
                except errors.JobyardError:
                    pass
        key = request.spec.idempotency_key
        raise errors.IdempotencyConflict(
            f"idempotency key {key!r} was already used for job {job.id} with a different"
            " request; send the same request again to get that job, or use another key",
            job_id=job.id,
        )

    def _legacy_hash(self, principal: Principal, request: submission.JobRequest) -> str:
        """The hash a submit stored before :func:`submission.request_hash`: that of the
        resolved spec, as accepted for this caller."""
        spec = self._resolve(principal, self._notified(request))
        spec = replace(
            spec,
            submitted_by=principal.key_name,
            submitted_key_id=principal.key_id,
            project_id=principal.project_id or spec.project_id,
        )
        return legacy_request_hash(spec)

    # ---- reads ---------------------------------------------------------------------
    def _job(self, principal: Principal, job_id: str) -> Job:
        """The caller's job: its tenant, and its project for a project-scoped key."""
        return self.store.get(principal.tenant_id, job_id, principal.project_id)

    def _may_change(self, principal: Principal, job: Job, what: str) -> None:
        """Members change their own jobs; operators and admins anyone's (audited)."""
        own = job.spec.submitted_key_id in (None, principal.key_id)
        if own:
            return
        if ROLE_RANK[principal.role] < ROLE_RANK[Role.OPERATOR]:
            raise errors.Forbidden(f"{what} a job submitted by another key needs the operator role")
        self.audit(
            principal, f"job.{what.split()[0].lower()}", job.id, {"owner": job.spec.submitted_by}
        )

    def find_by_submission_id(self, principal: Principal, submission_id: str) -> Job | None:
        """The caller's job whose idempotency key (a Ray submission id) is this one."""
        job = self.store.find_by_idempotency_key(principal.tenant_id, submission_id)
        if job is not None and principal.project_id not in (None, job.spec.project_id):
            return None
        return job

    def batch_inputs(self, job: Job, *, limit: int | None = None) -> list[Any] | None:
        """The first ``limit`` batch items of a job (already read with its tenant check),
        or None when it has none."""
        if not job.spec.inputs_sha256:
            return None
        items: list[Any] = []
        buf = b""
        for chunk in self.blobs.read_chunks(job.spec.inputs_sha256):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    items.append(json.loads(line))
                if limit is not None and len(items) >= limit:
                    return items
        if buf.strip() and (limit is None or len(items) < limit):
            items.append(json.loads(buf))
        return items

    def delete(self, principal: Principal, job_id: str) -> None:
        """Delete an ended job with its timeline, results rows and files (logs, work)."""
        job = self._job(principal, job_id)
        if not job.is_terminal or not self.store.delete_ended(job):
            raise errors.InvalidTransition(
                f"job {job_id} has not ended ({job.state.value}); cancel it first",
                current=job.state.value,
            )
        self.log_files.delete(job.id)

    def get(self, principal: Principal, job_id: str) -> Job:
        return self._job(principal, job_id)

    def setup_names(
        self,
        principal: Principal,
        job: Job,
        registry: RegistryService,
        folders: FolderService,
    ) -> dict[str, Any]:
        """The names of what a model job uses (model version, environment, folders, the
        folders of its role bindings), for a reader of the job: ids alone say nothing.
        ``registry``/``folders`` are the registry and folder services; a name that is gone
        (or another tenant's) stays None."""
        s = job.spec

        def mine(obj: Any) -> Any:
            return obj if obj is not None and obj.tenant_id == principal.tenant_id else None

        def folder_name(folder_id: str | None) -> str | None:
            folder = mine(folders.get_unscoped(folder_id)) if folder_id else None
            return folder.name if folder is not None else None

        version = (
            mine(registry.store.get_version_unscoped(s.model_version_id))
            if (s.model_version_id)
            else None
        )
        env = (
            mine(registry.store.get_environment_unscoped(s.environment_id))
            if (s.environment_id)
            else None
        )
        bindings = []
        for b in s.input_bindings:
            shown = dict(b)
            if b.get("folder_id"):
                shown["folder"] = folder_name(str(b["folder_id"]))
            bindings.append(shown)
        return {
            "model": version.ref if version is not None else None,
            "environment": env.name if env is not None else None,
            "input_folder": folder_name(s.input_folder_id),
            "output_folder": folder_name(s.output_folder_id),
            "role_bindings": bindings,
        }

    def retries(self, principal: Principal, job_id: str) -> list[str]:
        return self.store.retries_of(principal.tenant_id, job_id)

    def retry(
        self,
        principal: Principal,
        job_id: str,
        *,
        reason: str | None = None,
        parameters: dict[str, Any] | None = None,
        priority: Priority | None = None,
        timeout_s: float | None = None,
        immediate: bool = False,
    ) -> Job:
        """A new job like an ended one, with changes; linked by ``retry_of``."""
        original = self._job(principal, job_id)
        self._may_change(principal, original, "Retrying")
        if not original.is_terminal:
            raise errors.Conflict(
                f"job {job_id} is {original.state.value}; only an ended job can be retried"
                " (cancel it first)",
                current=original.state.value,
            )
        spec = original.spec
        merged = {**spec.parameters, **(parameters or {})}
        if spec.model_version_id:
            version = self.registry.resolve(principal, spec.model_version_id)
            merged = self.registry.check_parameters(version, merged)
        spec = replace(
            spec,
            parameters=merged,
            priority=priority or spec.priority,
            timeout_s=timeout_s if timeout_s is not None else spec.timeout_s,
            retry_of=original.id,
            retry_reason=reason,
            idempotency_key=None,
            scheduled_at=None,
            submitted_by=principal.key_name,
        )
        job, _ = self.submit(principal, spec, immediate=immediate)
        return job

    def list_jobs(
        self, principal: Principal, flt: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise errors.InvalidInput(
                f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit"
            )
        flt = replace(flt, project_id=principal.project_id or flt.project_id)
        items, next_cursor, counts = self.store.page(
            principal.tenant_id, flt, limit=limit, cursor=cursor
        )
        return JobPage(items, next_cursor, counts)

    def page_at(
        self, principal: Principal, flt: JobFilter, *, offset: int, size: int
    ) -> OffsetPage:
        """Up to ``size`` jobs from position ``offset`` (newest first), for APIs that page
        by number, by following the native cursors (the native list has no offsets)."""
        found: list[Job] = []
        skip = offset
        page = self.list_jobs(principal, flt, limit=min(MAX_LIST_LIMIT, offset + size))
        by_status = page.by_status  # the counts ignore the states filter: apply it here
        total = sum(n for s, n in by_status.items() if not flt.states or s in flt.states)
        while offset < total:
            found.extend(page.items[skip : skip + size - len(found)])
            skip = max(0, skip - len(page.items))
            if len(found) >= size or page.next_cursor is None:
                break
            limit = min(MAX_LIST_LIMIT, skip + size - len(found))
            page = self.list_jobs(principal, flt, limit=limit, cursor=page.next_cursor)
        return OffsetPage(found, total, by_status)

    def events(self, principal: Principal, job_id: str, after: int | None = None) -> list[JobEvent]:
        self._job(principal, job_id)
        return self.store.events(principal.tenant_id, job_id, after=after)

    # ---- cancel --------------------------------------------------------------------
    def cancel(
        self, principal: Principal, job_id: str, *, force: bool = False, reason: str | None = None
    ) -> Job:
        """Cancel a job: at once when it waits, by stopping its process when it runs."""
        who = f" by {principal.key_name}"
        why = f": {reason}" if reason else ""
        self._may_change(principal, self._job(principal, job_id), "Cancelling")
        for _ in range(5):
            job = self._job(principal, job_id)
            if job.state in states.TERMINAL:
                raise errors.InvalidTransition(
                    f"job {job_id} has already ended ({job.state.value}); it cannot be cancelled",
                    current=job.state.value,
                )
            if job.state is JobState.CANCELLING:
                return job
            now = self.clock.now()
            try:
                if job.state in states.PENDING:
                    return self.store.transition(
                        job,
                        JobState.CANCELLED,
                        now=now,
                        message=f"Job cancelled{who}{why}.",
                        values={"error_type": "CANCELLED"},
                    )
                job = self.store.transition(
                    job,
                    JobState.CANCELLING,
                    now=now,
                    message=f"Cancel requested{who}{' (forced)' if force else ''}{why}.",
                    values={"cancel_force": force},
                )
            except errors.StaleState:
                continue
            self.wakeup.cancel_requested(job.id)
            return job
        raise errors.StaleState(f"job {job_id} keeps changing; retry the cancel")


def _not_stored() -> errors.JobyardError:
    return errors.StoreUnavailable("the job could not be stored; retry it")


def _validate(spec: JobSpec | PlainSpec) -> None:
    """What a job's spec must be, whatever sent it (a plain job: without a model)."""
    model_version_id = spec.model_version_id if isinstance(spec, JobSpec) else None
    if spec.entrypoint is not None and spec.argv is not None:
        raise errors.InvalidInput(
            "entrypoint: a command string or an argv list, not both", field="entrypoint"
        )
    if spec.entrypoint is None and spec.argv is None and model_version_id is None:
        raise errors.InvalidInput(
            "entrypoint is required (a command string or an argv list) unless a model is given",
            field="entrypoint",
        )
    if spec.entrypoint is not None and not spec.entrypoint.strip():
        raise errors.InvalidInput("entrypoint must not be empty", field="entrypoint")
    if spec.argv is not None and (not spec.argv or not spec.argv[0]):
        raise errors.InvalidInput("entrypoint argv must not be empty", field="entrypoint")
    if spec.timeout_s is not None and spec.timeout_s <= 0:
        raise errors.InvalidInput("timeout_s must be greater than 0", field="timeout_s")
    for name in spec.env:
        if not ENV_NAME.match(name):
            raise errors.InvalidInput(f"env: {name!r} is not a valid variable name", field="env")
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise errors.InvalidInput(
                f"env: {name!r} is reserved (JOBYARD_* variables are set by jobyard)", field="env"
            )


def legacy_request_hash(spec: JobSpec) -> str:
    """The request hash stored before ``v2:`` (rows accepted then keep it): the hex
    SHA-256 of the resolved spec without its idempotency key and submitter name."""
    body = asdict(spec)
    body.pop("idempotency_key", None)
    body.pop("submitted_by", None)
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
