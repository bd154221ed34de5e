"""Job rows: insert, read, list, and every state change as compare-and-set + event."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from operator import itemgetter
from types import UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin, get_type_hints

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

from jobyard import errors
from jobyard.domain import states
from jobyard.domain.jobs import (
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    PlainSpec,
    ResourceUsage,
    Tracking,
)
from jobyard.domain.retry import RetryPlan
from jobyard.domain.states import JobState
from jobyard.store import dialects, fencing, hour_counts, page_statements
from jobyard.store.database import Database, translate_errors
from jobyard.store.prepared import (
    PreparedInsert,
    PreparedInsertWith,
    driver_cursor,
    prepared_insert,
    prepared_insert_with,
    prepared_rows_with,
)
from jobyard.store.tables import (
    job_artifacts,
    job_counts,
    job_events,
    jobs,
    model_versions,
    models,
)

#: the job holds a slot (starting, running or cancelling)
_IS_ACTIVE = jobs.c.state.in_(sorted(s.value for s in states.ACTIVE))
#: the reads of ``GET /v1/jobs/{id}``, built once: on SQLite building a statement costs
#: about what running it does (≈ 90 µs of ≈ 220 µs for the job's row)
_GET = sa.select(jobs).where(
    jobs.c.id == sa.bindparam("job_id"), jobs.c.tenant_id == sa.bindparam("tenant_id")
)
_GET_IN_PROJECT = _GET.where(jobs.c.project_id == sa.bindparam("project_id"))
_RETRIES = (
    sa.select(jobs.c.id)
    .where(jobs.c.tenant_id == sa.bindparam("tenant_id"), jobs.c.retry_of == sa.bindparam("job_id"))
    .order_by(jobs.c.seq)
)


class _Columns:
    """How the fields of a domain dataclass map to the same-named columns of ``jobs``,
    worked out once from its type hints and the table, so that a new field needs no
    code here: an enum is stored as its value; a tuple as a JSON list (an empty one as
    NULL when the field's default is empty too), read back as a tuple; a NULL read for
    a field that is not optional gives its default."""

    def __init__(self, cls: type[Any], *, skip: frozenset[str] = frozenset()) -> None:
        hints = get_type_hints(cls)
        self.names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in skip)
        encode: dict[str, Callable[[Any], Any]] = {}
        decode: dict[str, Callable[[Any], Any]] = {}
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            hint, optional = _unwrap(hints[f.name])
            default = _default(f)
            if isinstance(hint, type) and issubclass(hint, Enum):
                encode[f.name], decode[f.name] = _enum_codec(hint)
            elif get_origin(hint) is tuple:
                encode[f.name], decode[f.name] = _tuple_codec(optional, default)
            elif not optional and jobs.c[f.name].nullable and default is not _NO_DEFAULT:
                decode[f.name] = _or_default(default)
        self._read = _getter(itemgetter, self.names)
        self.decode = tuple(decode.items())
        self.encode = encode
        #: the column values of an object: a function compiled once, as a dataclass's
        #: ``__init__`` is, so the insert's row costs what a dict written out would
        read = {n: f"_encode_{n}(row.{n})" if n in encode else f"row.{n}" for n in self.names}
        names = {f"_encode_{n}": fn for n, fn in encode.items()}
        self.row: Callable[[Any], dict[str, Any]] = _dict_function(read, "", names)

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The field values read from ``row`` (keyword arguments of the dataclass)."""
        values = dict(zip(self.names, self._read(row), strict=False))
        for name, fn in self.decode:
            values[name] = fn(values[name])
        return values


_NO_DEFAULT: Any = object()


def _dict_function(
    read: Mapping[str, str], prelude: str, names: Mapping[str, Any]
) -> Callable[[Any], dict[str, Any]]:
    """The function of ``row`` that gives the dict of ``read``'s expressions (after the
    statement ``prelude``; ``names`` are the names they use): compiled once, as a
    dataclass's ``__init__`` is, so a row costs what a dict written out would."""
    scope: dict[str, Any] = dict(names)
    body = ", ".join(f"{n!r}: {e}" for n, e in read.items())
    first = f"    {prelude}\n" if prelude else ""
    source = f"def row(row):\n{first}    return {{{body}}}\n"
    exec(source, scope)  # noqa: S102 - column names and this module's expressions only
    function: Callable[[Any], dict[str, Any]] = scope["row"]
    return function


def _getter(make: Callable[..., Callable[[Any], Any]], names: tuple[str, ...]) -> Any:
    """``attrgetter``/``itemgetter`` of ``names`` that always answers a tuple."""
    if len(names) == 1:
        one = make(names[0])
        return lambda obj: (one(obj),)
    return make(*names)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, whether it was optional)."""
    if get_origin(hint) in (Union, UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(get_args(hint))
    return hint, False


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NO_DEFAULT


def _enum_codec(
    cls: type[Enum],
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    return (lambda v: v.value if v is not None else None), (
        lambda v: cls(v) if v is not None else None
    )


def _tuple_codec(optional: bool, default: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if optional:
        return (lambda v: list(v) if v is not None else None), (
            lambda v: tuple(v) if v is not None else None
        )
    if default == ():
        return (lambda v: list(v) or None), (lambda v: tuple(v) if v is not None else ())
    return (lambda v: list(v)), (lambda v: tuple(v) if v is not None else default)


def _or_default(default: Any) -> Callable[[Any], Any]:
    if isinstance(default, dict):
        return lambda v: v if v is not None else {}
    return lambda v: v if v is not None else default


_SPEC = _Columns(JobSpec)
_JOB = _Columns(Job, skip=frozenset({"spec", "usage", "tracking"}))
_USAGE = _Columns(ResourceUsage)
_TRACKING = _Columns(Tracking)
_USAGE_COLUMNS = _USAGE.names
_TRACKING_COLUMNS = _TRACKING.names


#: a filter that selects every job of a tenant
_NO_FILTER = JobFilter()
#: the open end of a range of creation times
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def job_from_row(row: Mapping[Any, Any]) -> Job:
    return Job(
        **_JOB.values(row),
        spec=JobSpec(**_SPEC.values(row)),
        usage=ResourceUsage(**_USAGE.values(row)),
        tracking=Tracking(**_TRACKING.values(row)),
    )


def _event_row(job: Job | Mapping[str, Any], **values: Any) -> dict[str, Any]:
    tenant_id = job.tenant_id if isinstance(job, Job) else job["tenant_id"]
    job_id = job.id if isinstance(job, Job) else job["id"]
    return {"tenant_id": tenant_id, "job_id": job_id, "data": {}, **values}


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s"):
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise errors.InvalidInput(
            "cursor is not valid: pass the next_cursor of a previous page", field="cursor"
        ) from e


def new_job_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` writes it: 122 random
    bits, formatted without a ``UUID`` object (≈ 1.2 against ≈ 2.4 µs, per job of a batch)."""
    x = os.urandom(16).hex()
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[int(x[16], 16) & 3]}{x[17:20]}-{x[20:]}"


def new_job_ids(n: int) -> list[str]:
    """``n`` ids of :func:`new_job_id`, in ascending order: as random as ``n`` calls (the
    same set could come from them), but a batch that takes them in its order inserts
    its jobs into the ``id`` index and its events into ``(job_id, seq)`` from left to
    right, not at random places (≈ 2.5 µs a job of SQLite's work at 20,000 jobs; more
    in a larger table). Only the order within one batch is told by them, which its
    jobs' seqs tell already."""
    return sorted(new_job_id() for _ in range(n))


#: the RFC 4122 variant's nibble (binary 10xx) for each value of its two random bits
_VARIANT = "89ab"


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job about to be inserted, with its first event's message."""

    tenant_id: str
    spec: JobSpec
    state: JobState
    sort_key: float
    now: datetime
    request_hash: str | None
    message: str
    id: str = field(default_factory=new_job_id)

    def row(self) -> dict[str, Any]:
        """The job's row in ``jobs``, by column."""
        return _new_row(self)

    def event(self) -> dict[str, Any]:
        """Its first event's row in ``job_events``, by column."""
        return _new_event(self)

    def job(self, seq: int) -> Job:
        """The job as the database now holds it (no need to read it back): a copy of a
        new job's defaults with its own fields (``Job.evolve``)."""
        spec = self.spec
        if spec.scheduled_at is not None and spec.scheduled_at.tzinfo is not UTC:
            spec = spec.evolve(scheduled_at=spec.scheduled_at.astimezone(UTC))
        return _JUST_INSERTED.evolve(
            id=self.id,
            seq=seq,
            tenant_id=self.tenant_id,
            spec=spec,
            state=self.state,
            created_at=self.now,
            updated_at=self.now,
            queued_at=self.now if self.state is JobState.QUEUED else None,
            request_hash=self.request_hash,
        )

    def insert(self, conn: sa.Connection) -> Job:
        """Insert the row and its event inside ``conn``'s transaction."""
        row, event = self.row(), self.event()
        queued = self.state is JobState.QUEUED
        if dialects.inserts_with_cte(conn.dialect.name):  # one statement, not three
            seq = self._with_event(row, event, conn.dialect).execute(conn, row, event)
            return self.job(seq)
        seq = prepared_insert(jobs, tuple(row), conn.dialect, "seq").execute(conn, row)
        prepared_insert(job_events, tuple(event), conn.dialect).execute(conn, event)
        if queued:
            dialects.notify_queue(conn)
        return self.job(seq)

    def statement(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
        """The one statement (SQL with ``$n`` placeholders, parameters) that inserts the
        row and its event, and notifies when queued (PostgreSQL): RETURNING the seq."""
        row, event = self.row(), self.event()
        prepared = self._with_event(row, event, dialect)
        return prepared.raw_sql, prepared.parameters(row, event)

    def _with_event(
        self, row: dict[str, Any], event: dict[str, Any], dialect: Dialect
    ) -> PreparedInsertWith:
        notify = dialects.NOTIFY_QUEUE_SQL if self.state is JobState.QUEUED else None
        return prepared_insert_with(
            (jobs, tuple(row), "seq"), (job_events, tuple(event)), dialect, notify
        )


#: how a new job's row reads each column from its NewJob ``row`` (``s``: its spec): the
#: one description of the row, for :meth:`NewJob.row` and the prepared insert's
#: parameters read straight from the NewJob (``PreparedInsert.reader``)
_NEW_ROW = {
    **{n: f"_encode_{n}(s.{n})" if n in _SPEC.encode else f"s.{n}" for n in _SPEC.names},
    "id": "row.id",
    "tenant_id": "row.tenant_id",
    "request_hash": "row.request_hash",
    "state": "row.state.value",
    "sort_key": "row.sort_key",
    "created_at": "row.now",
    "updated_at": "row.now",
    "queued_at": "row.now if row.state is _QUEUED else None",
}
_NEW_ROW_PRELUDE = "s = row.spec"
_NEW_ROW_NAMES: dict[str, Any] = {f"_encode_{n}": fn for n, fn in _SPEC.encode.items()} | {
    "_QUEUED": JobState.QUEUED
}
#: its first event's row, the same way
_NEW_EVENT = {
    "tenant_id": "row.tenant_id",
    "job_id": "row.id",
    "at": "row.now",
    "kind": "'state'",
    "from_state": "None",
    "to_state": "row.state.value",
    "message": "row.message",
    "data": "{}",
}


_new_row = _dict_function(_NEW_ROW, _NEW_ROW_PRELUDE, _NEW_ROW_NAMES)
_new_event = _dict_function(_NEW_EVENT, _NEW_ROW_PRELUDE, _NEW_ROW_NAMES)


#: a new row's usual values whose JSON is worked out once: the default ``retry_on``
#: (≈ 2 µs a job of a batch for the same 3 strings through ``json.dumps``)
_COMMON = {"retry_on": _SPEC.encode["retry_on"](JobSpec().retry_on)}


class NewBatch(NamedTuple):
    """What the plain jobs of one batch share: tenant, time, submitter and project."""

    tenant_id: str
    now: datetime
    submitted_by: str | None
    submitted_key_id: str | None
    project_id: str


class NewPlainJob(NamedTuple):
    """A plain job of a batch about to be inserted: its row holds ``spec``'s fields, the
    batch's and a new :class:`JobSpec`'s defaults for the rest (no ``JobSpec``, no
    ``Job`` built: ≈ 0.3 µs against ≈ 4 for a :class:`NewJob` and its job)."""

    id: str
    spec: PlainSpec
    state: JobState
    sort_key: float
    message: str
    batch: NewBatch


#: the spec columns a batch sets for all its plain jobs
_BY_BATCH = ("submitted_by", "submitted_key_id", "project_id")
_SPEC_DEFAULTS = JobSpec()
#: a plain job's row, as ``_NEW_ROW`` (``s``: its PlainSpec, ``b``: its NewBatch): the
#: same row a NewJob of the same fields writes (``_default_<name>``: a new spec's value)
_PLAIN_ROW = {
    **{
        n: (f"_encode_{n}(s.{n})" if n in _SPEC.encode else f"s.{n}")
        if n in PlainSpec._fields
        else f"b.{n}"
        if n in _BY_BATCH
        else f"_default_{n}"
        for n in _SPEC.names
    },
    "id": "row.id",
    "tenant_id": "b.tenant_id",
    "request_hash": "None",
    "state": "row.state.value",
    "sort_key": "row.sort_key",
    "created_at": "b.now",
    "updated_at": "b.now",
    "queued_at": "b.now if row.state is _QUEUED else None",
}
_PLAIN_EVENT = {
    "tenant_id": "b.tenant_id",
    "job_id": "row.id",
    "at": "b.now",
    "kind": "'state'",
    "from_state": "None",
    "to_state": "row.state.value",
    "message": "row.message",
    "data": "{}",
}
_PLAIN_PRELUDE = "s = row.spec; b = row.batch"
_PLAIN_NAMES = _NEW_ROW_NAMES | {
    f"_default_{n}": _SPEC.encode[n](v) if n in _SPEC.encode else v
    for n, v in ((n, getattr(_SPEC_DEFAULTS, n)) for n in _SPEC.names)
}
if tuple(_PLAIN_ROW) != tuple(_NEW_ROW) or tuple(_PLAIN_EVENT) != tuple(_NEW_EVENT):
    raise RuntimeError("a plain job's row must have a NewJob's columns")


def insert_parameters(
    insert: PreparedInsert,
    batch: Sequence[NewJob | NewPlainJob],
    row: Mapping[str, str],
    plain_row: Mapping[str, str],
) -> list[Any]:
    """``insert``'s parameters of each job's row or first event (``_NEW_ROW`` or
    ``_NEW_EVENT`` for a NewJob, ``_PLAIN_ROW`` or ``_PLAIN_EVENT`` for a NewPlainJob),
    in ``batch``'s order, read from the jobs without their rows' dicts: what
    ``insert.parameters(n.row())`` gives, ≈ 1.5 µs less a job."""
    full = insert.reader(row, _NEW_ROW_PRELUDE, _NEW_ROW_NAMES, _COMMON)
    plain = insert.reader(plain_row, _PLAIN_PRELUDE, _PLAIN_NAMES, _COMMON)
    return [plain(n) if type(n) is NewPlainJob else full(n) for n in batch]


_NO_USAGE = ResourceUsage()
#: what every job is as inserted, but its own fields (``NewJob.job`` sets them all)
_JUST_INSERTED = Job(
    id="",
    seq=0,
    tenant_id="",
    spec=JobSpec(),
    state=JobState.QUEUED,
    attempt=0,
    lease_epoch=0,
    lease_owner=None,
    lease_expires_at=None,
    created_at=_EARLIEST,
    updated_at=_EARLIEST,
    queued_at=None,
    started_at=None,
    ended_at=None,
    exit_code=None,
    error_type=None,
    message=None,
    pid=None,
    node_id=None,
    cancel_force=False,
    usage=_NO_USAGE,
)


def _insert_many(conn: sa.Connection, batch: Sequence[NewJob | NewPlainJob]) -> list[int | None]:
    """Insert ``batch`` (executemany) in its order; each job's seq, or None for a job
    whose idempotency key is taken (by an earlier job, or by one before it in the batch):
    that job is skipped. (A plain job has no key.)"""
    keyed = [n for n in batch if type(n) is NewJob and n.spec.idempotency_key is not None]
    taken: set[tuple[str, str]] = set()
    if keyed:
        for tenant in {n.tenant_id for n in keyed}:
            keys = sorted({str(n.spec.idempotency_key) for n in keyed if n.tenant_id == tenant})
            for i in range(0, len(keys), 500):
                stmt = sa.select(jobs.c.idempotency_key).where(
                    jobs.c.tenant_id == tenant, jobs.c.idempotency_key.in_(keys[i : i + 500])
                )
                taken.update((tenant, k) for (k,) in conn.execute(stmt))
    fresh: list[NewJob | NewPlainJob] = []
    for n in batch:
        if type(n) is NewJob and (key := n.spec.idempotency_key) is not None:
            if (n.tenant_id, key) in taken:
                continue
            taken.add((n.tenant_id, key))
        fresh.append(n)
    seqs: dict[str, int] = {}
    if fresh and dialects.inserts_with_cte(conn.dialect.name):
        seqs = _insert_with_events(conn, fresh)
    elif fresh:
        # a plain executemany (RETURNING would make SQLAlchemy insert row by row to keep
        # the order), then the sequence numbers: on SQLite from the largest before and
        # after, else (or if they do not tell) read back by id
        sqlite = conn.dialect.name == "sqlite"
        before = _largest_seq(conn) if sqlite else None
        insert = prepared_insert(jobs, tuple(_NEW_ROW), conn.dialect)
        insert.execute_parameters(conn, insert_parameters(insert, fresh, _NEW_ROW, _PLAIN_ROW))
        events = prepared_insert(job_events, tuple(_NEW_EVENT), conn.dialect)
        events.execute_parameters(conn, insert_parameters(events, fresh, _NEW_EVENT, _PLAIN_EVENT))
        if any(n.state is JobState.QUEUED for n in fresh):
            dialects.notify_queue(conn)
        ids = [n.id for n in fresh]
        if before is not None and _largest_seq(conn) == before + len(ids):
            if len(ids) == len(batch):  # none skipped: the seqs in the batch's order
                return list(range(before + 1, before + len(ids) + 1))
            seqs = dict(zip(ids, range(before + 1, before + len(ids) + 1), strict=True))
        else:
            for i in range(0, len(ids), 500):
                stmt = sa.select(jobs.c.id, jobs.c.seq).where(jobs.c.id.in_(ids[i : i + 500]))
                seqs.update((job_id, seq) for job_id, seq in conn.execute(stmt))
    return [seqs.get(n.id) for n in batch]


def _insert_with_events(
    conn: sa.Connection, fresh: Sequence[NewJob | NewPlainJob]
) -> dict[str, int]:
    """PostgreSQL: ``fresh`` and their first events inserted by one statement (a
    data-modifying CTE over arrays, ``PreparedRowsWith``), notified when any is queued;
    their seqs by id, as the statement returns them."""
    rows = prepared_rows_with(
        (jobs, tuple(_NEW_ROW), "id, seq"), (job_events, tuple(_NEW_EVENT)), conn.dialect
    )
    insert = prepared_insert(jobs, tuple(_NEW_ROW), conn.dialect)
    parents = insert_parameters(insert, fresh, _NEW_ROW, _PLAIN_ROW)
    events = prepared_insert(job_events, tuple(_NEW_EVENT), conn.dialect)
    children = insert_parameters(events, fresh, _NEW_EVENT, _PLAIN_EVENT)
    found = rows.execute(
        conn, [tuple(p.values()) for p in parents], [tuple(c.values()) for c in children]
    )
    if any(n.state is JobState.QUEUED for n in fresh):
        dialects.notify_queue(conn)
    return {job_id: seq for job_id, seq in found}


def _largest_seq(conn: sa.Connection) -> int:
    """The largest ``seq`` in ``jobs`` (0 when empty). On SQLite ``seq`` is the rowid: a
    row inserted without one gets the largest plus one (a random free one only once the
    largest is 2**63 - 1), so when n rows inserted one after the other raise it by
    exactly n, they hold the n numbers after the old largest, in their order; that
    saves reading 1,000 ids back (≈ 2.4 µs a job)."""
    with driver_cursor(conn, _LARGEST_SEQ, ()) as cursor:
        cursor.execute(_LARGEST_SEQ)
        return int(cursor.fetchone()[0])


_LARGEST_SEQ = "SELECT coalesce(max(seq), 0) FROM jobs"


class JobStore:
    """All SQL about jobs and their events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: whether :meth:`NewJob.insert` is one statement (it may commit by itself)
        self._one_statement = dialects.inserts_with_cte(db.dialect)

    # ---- submission -------------------------------------------------------------
    def insert(
        self,
        *,
        tenant_id: str,
        spec: JobSpec,
        state: JobState,
        sort_key: float,
        now: datetime,
        request_hash: str | None,
        message: str,
    ) -> tuple[Job, bool]:
        """Insert a new job with its first event; with an idempotency key already used by
        this tenant, return that job instead. Returns (job, created). The insert is
        committed by the group-commit writer, with the inserts that arrive with it."""
        new = NewJob(tenant_id, spec, state, sort_key, now, request_hash, message)
        try:
            return self.db.group.run(new.insert, one_statement=self._one_statement), True
        except exc.IntegrityError:
            existing = self._existing(new)
            if existing is None:
                raise
            return existing, False

    async def insert_async(self, new: NewJob) -> tuple[Job, bool]:
        """:meth:`insert` for the event loop: waits for the commit without a thread
        (PostgreSQL: the loop's own connection; SQLite: when its write lock is free)."""
        statements = self.db.loop_statements
        try:
            if statements is not None:
                sql, params = new.statement(self.db.engine.dialect)
                with translate_errors():
                    row = await statements.run(sql, params)
                return new.job(row[0]), True
            return await self.db.group.run_async(new.insert), True
        except exc.IntegrityError:
            existing = await asyncio.to_thread(self._existing, new)
            if existing is None:
                raise
            return existing, False

    def insert_many(self, batch: Sequence[NewJob | NewPlainJob]) -> list[int | None]:
        """Insert jobs in one transaction (one commit), in their order: each its seq (a
        NewJob's job is ``new.job(seq)``), or None where its idempotency key was already
        used by the tenant (see :meth:`find_by_idempotency_key`)."""
        if not batch:
            return []
        return self.db.group.run(lambda conn: _insert_many(conn, batch))

    def _existing(self, new: NewJob) -> Job | None:
        """The job that holds ``new``'s idempotency key (the insert lost to it), or None
        when the insert failed for another reason."""
        key = new.spec.idempotency_key
        return self.find_by_idempotency_key(new.tenant_id, key) if key is not None else None

    def find_by_idempotency_key(self, tenant_id: str, key: str) -> Job | None:
        with self.db.read() as conn:
            row = (
                conn.execute(
                    sa.select(jobs).where(
                        jobs.c.tenant_id == tenant_id, jobs.c.idempotency_key == key
                    )
                )
                .mappings()
                .first()
            )
        return job_from_row(row) if row else None

    def find_by_idempotency_keys(self, tenant_id: str, keys: Sequence[str]) -> dict[str, Job]:
        """The tenant's jobs holding these idempotency keys, by key."""
        found: dict[str, Job] = {}
        unique = sorted(set(keys))
        with self.db.read() as conn:
            for i in range(0, len(unique), 500):
                stmt = sa.select(jobs).where(
                    jobs.c.tenant_id == tenant_id, jobs.c.idempotency_key.in_(unique[i : i + 500])
                )
                for row in conn.execute(stmt).mappings():
                    found[row["idempotency_key"]] = job_from_row(row)
        return found

    # ---- reads -------------------------------------------------------------------
    def get(self, tenant_id: str, job_id: str, project_id: str | None = None) -> Job:
        """The tenant's job (within ``project_id`` when given), or NotFound."""
        params = {"job_id": job_id, "tenant_id": tenant_id, "project_id": project_id}
        stmt = _GET if project_id is None else _GET_IN_PROJECT
        with self.db.read() as conn:
            row = conn.execute(stmt, params).mappings().first()
        if row is None:
            raise errors.NotFound(f"job {job_id} does not exist", kind="job", id=job_id)
        return job_from_row(row)

    def get_unscoped(self, job_id: str) -> Job | None:
        """A job by id across tenants: for the dispatcher, never for API reads."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return job_from_row(row) if row else None

    def _where(self, tenant_id: str, flt: JobFilter, *, with_states: bool) -> list[Any]:
        """Conditions for the filter. A range of creation times has both ends (the open
        one far away), so that SQLite's planner, which does not see the values, counts
        it from the created_at index."""
        cond: list[Any] = [jobs.c.tenant_id == tenant_id]
        if flt.project_id is not None:
            cond.append(jobs.c.project_id == flt.project_id)
        if flt.model_version_ids:
            cond.append(jobs.c.model_version_id.in_(sorted(flt.model_version_ids)))
        if with_states and flt.states:
            cond.append(jobs.c.state.in_(sorted(s.value for s in flt.states)))
        if flt.priorities:
            cond.append(jobs.c.priority.in_(sorted(p.value for p in flt.priorities)))
        if flt.job_type is not None:
            cond.append(jobs.c.job_type == flt.job_type)
        if flt.submitted_by is not None:
            cond.append(jobs.c.submitted_by == flt.submitted_by)
        if flt.created_from is not None or flt.created_to is not None:
            cond.append(jobs.c.created_at >= (flt.created_from or _EARLIEST))
            cond.append(jobs.c.created_at <= (flt.created_to or _LATEST))
        if flt.name_contains:
            text = flt.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            cond.append(jobs.c.name.ilike(f"%{text}%", escape="\\"))
        if flt.id_prefix:
            cond.extend(_id_prefix(flt.id_prefix))
        return cond

    def page(
        self, tenant_id: str, flt: JobFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None, dict[str, int]]:
        """:meth:`list_jobs` and :meth:`count_by_state` in one read transaction (one
        connection checkout; on SQLite one snapshot, so the counts agree with the page)."""
        with self.db.read() as conn:
            rows = conn.execute(*self._list_stmt(conn, tenant_id, flt, limit, cursor))
            found = rows.mappings().all()
            counts = self._counts(conn, tenant_id, flt)
        return (*self._page_of(found, limit), counts)

    def list_jobs(
        self, tenant_id: str, flt: JobFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """Newest first; a page of at most ``limit`` and the cursor of the next page."""
        with self.db.read() as conn:
            page = self._list_stmt(conn, tenant_id, flt, limit, cursor)
            rows = conn.execute(*page).mappings().all()
        return self._page_of(rows, limit)

    @staticmethod
    def _page_of(rows: Sequence[Any], limit: int) -> tuple[list[Job], str | None]:
        items = [job_from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(items[-1].seq) if len(rows) > limit and items else None
        return items, next_cursor

    def _list_stmt(
        self, conn: sa.Connection, tenant_id: str, flt: JobFilter, limit: int, cursor: str | None
    ) -> page_statements.Statement:
        """The page's statement (``limit + 1`` rows, newest first) and its parameters:
        built once for the common filters, else here."""
        before = decode_cursor(cursor) if cursor else None
        built = page_statements.list_statement(tenant_id, flt, limit, before)
        if built is not None:
            return built
        low, high = flt.created_from, flt.created_to
        timed = low is not None or high is not None
        untimed = replace(flt, created_from=None, created_to=None) if timed else flt
        cond = self._where(tenant_id, untimed, with_states=True)
        if before is not None:
            cond.append(jobs.c.seq < before)
        if timed:
            # newest first from the highest seq the range can hold down to its lowest
            # (``hour_counts.seq_bounds``): as seq follows created_at, the range's own
            # jobs come first, and nothing is sorted. The times only filter (an
            # expression no index holds): PostgreSQL's generic plan would otherwise
            # read the whole range from the created_at index and sort it
            lo, hi = hour_counts.seq_bounds(conn, tenant_id, flt)
            cond += [jobs.c.seq >= lo, jobs.c.seq <= hi]
            created = sa.func.coalesce(jobs.c.created_at, jobs.c.created_at)
            if low is not None:
                cond.append(created >= low)
            if high is not None:
                cond.append(created <= high)
        return sa.select(jobs).where(*cond).order_by(jobs.c.seq.desc()).limit(limit + 1), {}

    def fold_count_shards(self) -> int:
        """PostgreSQL: fold the counter rows (``job_counts``, ``job_hour_counts``) of
        backends that are gone, and the hour rows more than an hour past, into shard 0
        (migration 0015: each backend adds to rows of its own, so a key would otherwise
        keep a row per connection it ever had); the shard-0 rows written. The counts do
        not change. SQLite keeps shard 0 only: 0."""
        if self.db.dialect != "postgresql":
            return 0
        with self.db.write() as conn:
            return int(conn.execute(sa.text("SELECT job_counts_fold()")).scalar_one())

    def count_by_state(self, tenant_id: str, flt: JobFilter) -> dict[str, int]:
        """Counts by state of the jobs matching the filter, ignoring its states."""
        with self.db.read() as conn:
            return self._counts(conn, tenant_id, flt)

    def _counts(self, conn: sa.Connection, tenant_id: str, flt: JobFilter) -> dict[str, int]:
        """:meth:`count_by_state` in ``conn``: a time range or a submitter from the hour
        counts (``hour_counts``), else :meth:`_count_stmt`."""
        by_hour = hour_counts.count_by_state(conn, tenant_id, flt)
        if by_hour is not None:
            return by_hour
        counts = conn.execute(*self._count_stmt(tenant_id, flt)).all()
        return {state: int(n) for state, n in counts if n}

    def _count_stmt(self, tenant_id: str, flt: JobFilter) -> page_statements.Statement:
        """Counts by state of the jobs matching the filter, ignoring its states, and the
        statement's parameters. Filters of project, priority and job type only read
        ``job_counts`` (rows kept by triggers, a few per job type); other filters count
        the matching jobs. Built once for the common filters, else here."""
        built = page_statements.count_statement(tenant_id, flt)
        if built is not None:
            return built
        counted = replace(
            flt, states=frozenset(), project_id=None, priorities=frozenset(), job_type=None
        )
        if counted == _NO_FILTER and flt.job_type != "":
            cond = [job_counts.c.tenant_id == tenant_id]
            if flt.project_id is not None:
                cond.append(job_counts.c.project_id == flt.project_id)
            if flt.priorities:
                cond.append(job_counts.c.priority.in_(sorted(p.value for p in flt.priorities)))
            if flt.job_type is not None:
                cond.append(job_counts.c.job_type == flt.job_type)
            total = sa.func.sum(job_counts.c.n)
            stmt = sa.select(job_counts.c.state, total).where(*cond).group_by(job_counts.c.state)
        else:
            cond = self._where(tenant_id, flt, with_states=False)
            stmt = sa.select(jobs.c.state, sa.func.count()).where(*cond).group_by(jobs.c.state)
        return stmt, {}

    def events(self, tenant_id: str, job_id: str, *, after: int | None = None) -> list[JobEvent]:
        cond = [job_events.c.job_id == job_id, job_events.c.tenant_id == tenant_id]
        if after is not None:
            cond.append(job_events.c.seq > after)
        stmt = sa.select(job_events).where(*cond).order_by(job_events.c.seq)
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            JobEvent(
                seq=r["seq"],
                job_id=r["job_id"],
                at=r["at"],
                kind=r["kind"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                message=r["message"],
                data=r["data"] or {},
            )
            for r in rows
        ]

    # ---- state changes -------------------------------------------------------------
    def transition(
        self,
        job: Job,
        to: JobState,
        *,
        now: datetime,
        message: str,
        epoch: int | None = None,
        values: Mapping[str, Any] | None = None,
        event_data: Mapping[str, Any] | None = None,
        conn: sa.Connection | None = None,
        retry: RetryPlan | None = None,
    ) -> Job:
        """Move ``job`` from the state it was read in to ``to``: a compare-and-set on its
        state (and lease epoch when given) plus an event row, in one transaction.
        With ``retry``, the ended attempt goes back to ``queued`` in the same transaction
        (readers never see the intermediate end). Raises InvalidTransition if the table
        forbids it, StaleState if the job changed."""
        states.check_transition(job.state, to)
        if conn is None:
            with self.db.write() as c:
                changed = self.transition(
                    job,
                    to,
                    now=now,
                    message=message,
                    epoch=epoch,
                    values=values,
                    event_data=event_data,
                    conn=c,
                    retry=retry,
                )
            if changed.state in states.TERMINAL:
                self.db.jobs_ended()
            return changed
        if retry is not None:
            ended = self.transition(
                job,
                to,
                now=now,
                message=message,
                epoch=epoch,
                values=values,
                event_data=event_data,
                conn=conn,
            )
            return self.transition(
                ended,
                JobState.QUEUED,
                now=now,
                message=retry.message,
                epoch=epoch,
                values={"not_before": retry.not_before, "ended_at": None},
                event_data={"not_before": retry.not_before.isoformat(), "attempt": ended.attempt},
                conn=conn,
            )
        cond = [jobs.c.id == job.id, jobs.c.state == job.state.value]
        if epoch is not None:
            cond.append(jobs.c.lease_epoch == epoch)
        update = {"state": to.value, "updated_at": now, "message": message, **(values or {})}
        if to in states.TERMINAL:
            update.setdefault("ended_at", now)
            update.setdefault("lease_owner", None)
            update.setdefault("lease_expires_at", None)
        if to is JobState.QUEUED:
            update.setdefault("queued_at", now)
            dialects.notify_queue(conn)
        row = (
            conn.execute(jobs.update().where(*cond).values(**update).returning(*jobs.c))
            .mappings()
            .first()
        )
        if row is None:
            raise errors.StaleState(
                f"job {job.id} is no longer {job.state.value}", id=job.id, expected=job.state.value
            )
        conn.execute(
            job_events.insert().values(
                _event_row(
                    job,
                    at=now,
                    kind="state",
                    from_state=job.state.value,
                    to_state=to.value,
                    message=message,
                    data=dict(event_data or {}),
                )
            )
        )
        return job_from_row(row)

    def add_event(
        self, job: Job, *, now: datetime, kind: str, message: str | None, data: Mapping[str, Any]
    ) -> None:
        """Append a non-state event (cells, notes, …) of the attempt that ``job`` is to
        the timeline; fenced: StaleState, and nothing written, unless that attempt (its
        lease epoch) still holds the job."""
        with self.db.write() as conn:
            fencing.hold(conn, job.id, job.lease_epoch)
            conn.execute(
                job_events.insert().values(
                    _event_row(job, at=now, kind=kind, message=message, data=dict(data))
                )
            )

    def count_active(self, states_: Sequence[JobState]) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.state.in_([s.value for s in states_]))
        )
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def count_unfinished_using(
        self, tenant_id: str, *, folder_id: str | None = None, environment_id: str | None = None
    ) -> int:
        """Jobs not yet ended that use the folder (as input or output) or environment."""
        cond = [
            jobs.c.tenant_id == tenant_id,
            jobs.c.state.notin_([s.value for s in states.TERMINAL]),
        ]
        if folder_id is not None:
            cond.append(
                sa.or_(jobs.c.input_folder_id == folder_id, jobs.c.output_folder_id == folder_id)
            )
        if environment_id is not None:
            cond.append(jobs.c.environment_id == environment_id)
        stmt = sa.select(sa.func.count()).select_from(jobs).where(*cond)
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def count_using_version(self, tenant_id: str, version_id: str) -> int:
        """Jobs (any state) that pinned this model version."""
        stmt = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(jobs.c.tenant_id == tenant_id, jobs.c.model_version_id == version_id)
        )
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def retention_expired(self, now: datetime, limit: int = 500) -> list[Job]:
        """Ended jobs of models with ``retention_hours`` whose time is up (all tenants)."""
        stmt = (
            sa.select(jobs, models.c.retention_hours)
            .join(model_versions, model_versions.c.id == jobs.c.model_version_id)
            .join(models, models.c.id == model_versions.c.model_id)
            .where(
                models.c.retention_hours.is_not(None),
                jobs.c.state.in_([s.value for s in states.TERMINAL]),
                jobs.c.ended_at.is_not(None),
            )
            .order_by(jobs.c.ended_at)
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [
            job_from_row(r)
            for r in rows
            if r["ended_at"] + timedelta(hours=r["retention_hours"]) <= now
        ]

    def delete_ended(self, job: Job) -> bool:
        """Delete an ended job with its events and results rows (never one that runs)."""
        with self.db.write() as conn:
            cond = [jobs.c.id == job.id, jobs.c.state.in_([s.value for s in states.TERMINAL])]
            if conn.execute(sa.select(jobs.c.seq).where(*cond)).first() is None:
                return False
            conn.execute(job_events.delete().where(job_events.c.job_id == job.id))
            conn.execute(job_artifacts.delete().where(job_artifacts.c.job_id == job.id))
            conn.execute(jobs.delete().where(*cond))
        return True

    def last_success_by_model(self, tenant_id: str) -> dict[str, datetime]:
        """The end time of each model's newest succeeded job."""
        stmt = (
            sa.select(model_versions.c.model_id, sa.func.max(jobs.c.ended_at))
            .join(model_versions, model_versions.c.id == jobs.c.model_version_id)
            .where(jobs.c.tenant_id == tenant_id, jobs.c.state == JobState.SUCCEEDED.value)
            .group_by(model_versions.c.model_id)
        )
        with self.db.read() as conn:
            return {m: t for m, t in conn.execute(stmt).all() if t is not None}

    def ahead_in_queue(self, job: Job) -> int:
        """Queued jobs (all tenants) that come before ``job`` in queue order."""
        cur = sa.select(jobs.c.sort_key).where(jobs.c.id == job.id).scalar_subquery()
        stmt = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(
                jobs.c.state == JobState.QUEUED.value,
                sa.or_(
                    jobs.c.sort_key < cur, sa.and_(jobs.c.sort_key == cur, jobs.c.seq < job.seq)
                ),
            )
        )
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def recent_durations(
        self, *, model_version_id: str | None = None, job_type: str | None = None, limit: int = 50
    ) -> list[float]:
        """Running times (s) of the newest succeeded jobs, of a model version, of a job
        type, or of any job (all tenants: this is a property of the system)."""
        cond: list[Any] = [
            jobs.c.state == JobState.SUCCEEDED.value,
            jobs.c.started_at.is_not(None),
            jobs.c.ended_at.is_not(None),
        ]
        if model_version_id is not None:
            cond.append(jobs.c.model_version_id == model_version_id)
        elif job_type is not None:
            cond.append(jobs.c.job_type == job_type)
        stmt = (
            sa.select(jobs.c.started_at, jobs.c.ended_at)
            .where(*cond)
            .order_by(jobs.c.ended_at.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            return [(e - s).total_seconds() for s, e in conn.execute(stmt).all()]

    def retries_of(self, tenant_id: str, job_id: str) -> list[str]:
        params = {"tenant_id": tenant_id, "job_id": job_id}
        with self.db.read() as conn:
            return [r[0] for r in conn.execute(_RETRIES, params).all()]


_NEXT_HEX = dict(zip("0123456789abcdef", "123456789abcdef", strict=False))


def _id_prefix(prefix: str) -> list[Any]:
    """Conditions for ids (lower-case UUIDs) that start with ``prefix``: a range of the
    primary key (LIKE would not use its index), bounded by hex digits only, so that a
    collation that ignores '-' (PostgreSQL's locales) orders it as it orders the ids; and
    LIKE for the exact answer."""
    low = prefix.rstrip("-")
    cond: list[Any] = [jobs.c.id.startswith(prefix, autoescape=True)]
    if low:
        cond.append(jobs.c.id >= low)
    high = low
    while high and high[-1] not in _NEXT_HEX:  # an 'f' (or a '-'): carry to the left
        high = high[:-1].rstrip("-")
    if high:
        cond.append(jobs.c.id < high[:-1] + _NEXT_HEX[high[-1]])
    return cond
