"""Event streams as polls: a tenant's job events after a ``seq``, and one job's events
plus its log, step by step. Synchronous; the API turns the steps into Server-Sent Events."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobyard import errors
from jobyard.domain import states
from jobyard.domain.auth import Principal
from jobyard.domain.jobs import Job, JobEvent
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.service.jobs import JobService
from jobyard.service.logs import LogService
from jobyard.store.events import EventStore

MAX_BATCH = 500  #: events read per query
#: polls that saw only an incomplete UTF-8 character at the end of the log before it is
#: sent anyway (decoded with replacement characters)
FLUSH_AFTER_STALLS = 10
_TERMINAL = frozenset(s.value for s in states.TERMINAL)


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """Which events a stream shows; an empty set does not filter."""

    job_ids: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    to_states: frozenset[JobState] = frozenset()  #: state events moving to these states
    job_states: frozenset[JobState] = frozenset()  #: events of jobs now in these states
    priorities: frozenset[Priority] = frozenset()
    job_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LogText:
    """New log output: the text of bytes ``offset`` to ``next_offset`` of an attempt's log."""

    text: str
    offset: int
    next_offset: int
    attempt: int


@dataclass(frozen=True)
class JobStep:
    """What one poll of a job found; ``ended`` once the job has ended and all was read."""

    items: list[JobEvent | LogText] = field(default_factory=list)
    ended: bool = False
    status: str | None = None  #: the final status (None: the job no longer exists)


class StreamService:
    def __init__(self, jobs: JobService, logs: LogService, events: EventStore) -> None:
        self.jobs = jobs
        self.logs = logs
        self.events = events

    @classmethod
    def of(cls, jobs: JobService) -> StreamService:
        """A stream service reading the database of ``jobs``."""
        return cls(jobs, LogService(jobs, jobs.log_files), EventStore(jobs.store.db))

    def events_after(
        self,
        principal: Principal,
        after_seq: int,
        *,
        job_id: str | None = None,
        flt: EventFilter | None = None,
        limit: int = MAX_BATCH,
    ) -> list[JobEvent]:
        """The caller's tenant's events with ``seq > after_seq``, oldest first."""
        f = flt or EventFilter()
        job_ids = {job_id} if job_id is not None else f.job_ids
        return self.events.after(
            principal.tenant_id,
            after_seq,
            limit=limit,
            job_ids=job_ids,
            kinds=f.kinds,
            to_states={s.value for s in f.to_states},
            job_states={s.value for s in f.job_states},
            priorities={p.value for p in f.priorities},
            job_types=f.job_types,
        )

    def latest_seq(self, principal: Principal) -> int:
        """Where a stream of only new events starts: the tenant's newest event."""
        return self.events.last_seq(principal.tenant_id)

    def follow_job(
        self,
        principal: Principal,
        job_id: str,
        *,
        after: int = 0,
        kinds: frozenset[str] | None = None,
        logs: bool = True,
        log_offset: int = 0,
    ) -> JobFollower:
        """Start following the caller's job (NotFound if it is not theirs): its events
        after ``after`` (only ``kinds``, None for all) and, with ``logs``, the log of
        its current attempt from byte ``log_offset``, then of later attempts."""
        self.jobs.get(principal, job_id)
        return JobFollower(self, principal, job_id, after, kinds, logs, log_offset)


class JobFollower:
    """The position in one job's timeline and log; :meth:`step` reads what is new."""

    def __init__(
        self,
        service: StreamService,
        principal: Principal,
        job_id: str,
        after: int,
        kinds: frozenset[str] | None,
        logs: bool,
        log_offset: int,
    ) -> None:
        self.service = service
        self.principal = principal
        self.job_id = job_id
        self.after = after
        self.kinds = kinds
        self.logs = logs
        self.offset = log_offset
        self.attempt: int | None = None
        self._stalls = 0

    def step(self) -> JobStep:
        """New events and log text; the job's end is seen before the last events are
        read, so every event up to the final state is in the step that ends."""
        try:
            texts, final = self._poll_log() if self.logs else ([], self._ended())
            events: list[JobEvent] = []
            if self.kinds is None or self.kinds:
                events = self.service.events_after(
                    self.principal,
                    self.after,
                    job_id=self.job_id,
                    flt=EventFilter(kinds=self.kinds or frozenset()),
                )
            if self.logs and _end_index(events) < len(events):
                texts += self._drain()  # the output written before the end goes first
        except errors.NotFound:  # the job was deleted (retention) while followed
            return JobStep(ended=True)
        if events:
            self.after = events[-1].seq
        if len(events) >= MAX_BATCH:
            final = None  # more events wait
        return JobStep(
            _merge(events, texts),
            ended=final is not None,
            status=final.state.value if final is not None else None,
        )

    def _ended(self) -> Job | None:
        job = self.service.jobs.get(self.principal, self.job_id)
        return job if job.is_terminal else None

    def _poll_log(self) -> tuple[list[LogText], Job | None]:
        jobs = self.service.jobs
        poll = self.service.logs.poll_log(
            self.principal, self.job_id, offset=self.offset, attempt=self.attempt
        )
        self.attempt = poll.attempt
        if poll.data:
            return self._text(poll.data), None
        if not poll.done:
            return [], None
        job = jobs.get(self.principal, self.job_id)
        current = max(job.attempt, 1)
        if self.attempt < current:  # this attempt's log is complete: on to the next one
            self.attempt, self.offset = self.attempt + 1, 0
            return [], None
        return [], job if job.is_terminal else None

    def _drain(self) -> list[LogText]:
        poll = self.service.logs.poll_log(
            self.principal, self.job_id, offset=self.offset, attempt=self.attempt
        )
        return self._text(poll.data) if poll.data else []

    def _text(self, data: bytes) -> list[LogText]:
        cut = complete_utf8_prefix(data)
        if cut == 0:
            self._stalls += 1
            if self._stalls < FLUSH_AFTER_STALLS:
                return []
            cut = len(data)
        self._stalls = 0
        assert self.attempt is not None
        text = data[:cut].decode("utf-8", errors="replace")
        item = LogText(text, self.offset, self.offset + cut, self.attempt)
        self.offset += cut
        return [item]


def _end_index(events: list[JobEvent]) -> int:
    """The index of the first event that ends the job (``len(events)`` if none does)."""
    return next(
        (i for i, e in enumerate(events) if e.kind == "state" and e.to_state in _TERMINAL),
        len(events),
    )


def _merge(events: list[JobEvent], texts: list[LogText]) -> list[JobEvent | LogText]:
    """Log text goes before the event of the job's end (it was written before it)."""
    end = _end_index(events)
    return [*events[:end], *texts, *events[end:]]


def complete_utf8_prefix(data: bytes) -> int:
    """The length of the longest prefix of ``data`` that does not end inside a UTF-8
    character (invalid bytes count as complete)."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        need = 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
        return n - back if back < need else n
    return n
