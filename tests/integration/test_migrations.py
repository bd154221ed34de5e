"""The schema exists only through migrations, and they match the tables module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.schema import CreateIndex

from jobyard.store import migrate
from jobyard.store.database import Database
from jobyard.store.registry import RegistryStore
from jobyard.store.tables import environments, metadata, tenants
from tests.conftest import PG_URL, REQUIRE_PG, _pg_reason


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database of its own without any schema: a SQLite file, or a new PostgreSQL
    database (the session's one is migrated already)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'old.db'}")
        yield db
        db.dispose()
        return
    reason = _pg_reason()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"jobyard_migration_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = Database(PG_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migrations_match_tables(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate.upgrade(db)  # idempotent on an already migrated database
        assert migrate.current_revision(db) == migrate.head_revision()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
    finally:
        db.dispose()


def test_partial_indexes_keep_their_condition(db_url: str) -> None:
    """The tables give PostgreSQL's ``WHERE`` of a partial index only once an engine on
    PostgreSQL exists (a server on SQLite never loads that dialect): with the database's
    own dialect, every partial index still renders with its condition."""
    db = Database(db_url)
    try:
        partial = [
            index
            for table in metadata.tables.values()
            for index in table.indexes
            if index.dialect_options["sqlite"]["where"] is not None
        ]
        assert len(partial) >= 10
        for index in partial:
            ddl = str(CreateIndex(index).compile(dialect=db.engine.dialect))
            condition = str(index.dialect_options["sqlite"]["where"])
            assert ddl.endswith(f" WHERE {condition}"), ddl
    finally:
        db.dispose()


def test_sqlite_pragmas(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with db.read() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(sa.text("PRAGMA temp_store")).scalar() == 2  # MEMORY
    finally:
        db.dispose()


def test_0009_gives_existing_environments_the_full_network(blank_db: Database) -> None:
    """An environment made before 0009 keeps its fields and gets ``network`` "full" (what
    its jobs had); the downgrade drops the column and keeps the row."""
    migrate.upgrade(blank_db, "0008")
    now = datetime.now(UTC)
    with blank_db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
        conn.execute(
            environments.insert().values(
                id="env-1",
                tenant_id="t",
                name="py-small",
                env_vars={"REGION": "eu"},
                pip_requirements=["pandas==2.*"],
                files={},
                cpu_slots=2,
                memory_limit_mb=512,
                max_concurrent_jobs=3,
                created_at=now,
                updated_at=now,
            )
        )
    migrate.upgrade(blank_db)
    env = RegistryStore(blank_db).find_environment("t", "py-small")
    assert env is not None
    assert (env.id, env.env_vars, env.pip_requirements, env.cpu_slots) == (
        "env-1",
        {"REGION": "eu"},
        ("pandas==2.*",),
        2,
    )
    assert (env.memory_limit_mb, env.max_concurrent_jobs, env.network) == (512, 3, "full")
    with blank_db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT name, network FROM environments")).all()
    assert [tuple(r) for r in stored] == [("py-small", "full")]

    cfg = migrate._config()
    with blank_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    assert migrate.current_revision(blank_db) == "0008"
    with blank_db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("environments")}
        names = conn.execute(sa.text("SELECT name FROM environments")).scalars().all()
    assert "network" not in columns and "max_concurrent_jobs" in columns
    assert names == ["py-small"]


def _counts_are_exact(db: Database) -> dict[tuple[str, ...], int]:
    """``job_counts`` summed over shards equals the jobs' own GROUP BY; those counts."""
    with db.engine.connect() as conn:
        kept = conn.execute(
            sa.text(
                "SELECT tenant_id, project_id, state, priority, job_type, SUM(n) FROM job_counts"
                " GROUP BY 1, 2, 3, 4, 5 HAVING SUM(n) <> 0"
            )
        ).all()
        counted = conn.execute(
            sa.text(
                "SELECT tenant_id, project_id, state, priority, COALESCE(job_type, ''), COUNT(*)"
                " FROM jobs GROUP BY 1, 2, 3, 4, 5"
            )
        ).all()
    found = {tuple(r[:5]): int(r[5]) for r in kept}
    assert found == {tuple(r[:5]): int(r[5]) for r in counted}
    return found


def _insert_trigger(db: Database) -> list[tuple[str, str]]:
    """PostgreSQL: the user triggers on ``jobs`` with their level (ROW or STATEMENT)."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT trigger_name, action_orientation FROM information_schema.triggers"
                " WHERE event_object_table = 'jobs' AND event_manipulation = 'INSERT'"
            )
        ).all()
    return sorted((str(name), str(level)) for name, level in rows)


def test_0013_counts_inserts_per_statement_and_back(blank_db: Database) -> None:
    """0013 (PostgreSQL: new jobs counted by a statement-level trigger) keeps the counts
    exact across it, for batches, single inserts and changes; the downgrade puts the
    row-level trigger back, exact again. SQLite: nothing changes."""
    from jobyard.domain.jobs import JobSpec
    from jobyard.domain.states import JobState
    from jobyard.store.jobs import NewJob, _insert_many

    now = datetime.now(UTC)

    def new(job_type: str | None, state: JobState = JobState.QUEUED) -> NewJob:
        return NewJob("t", JobSpec(entrypoint="true", job_type=job_type), state, 0.0, now, None, "")

    def write_some() -> None:
        with blank_db.write() as conn:
            _insert_many(conn, [new("a"), new(None), new("a"), new("b", JobState.SCHEDULED)])
            new("a").insert(conn)
            conn.execute(sa.text("UPDATE jobs SET state = 'cancelled' WHERE job_type = 'b'"))

    pg = blank_db.dialect == "postgresql"
    migrate.upgrade(blank_db, "0012")
    with blank_db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
    write_some()
    if pg:
        assert _insert_trigger(blank_db) == [("tr_jobs_count", "ROW")]
    migrate.upgrade(blank_db, "0013")
    write_some()
    if pg:
        assert _insert_trigger(blank_db) == [("tr_jobs_count_insert", "STATEMENT")]
    assert _counts_are_exact(blank_db) == {
        ("t", "default", "queued", "normal", "a"): 6,
        ("t", "default", "queued", "normal", ""): 2,
        ("t", "default", "cancelled", "normal", "b"): 2,
    }

    cfg = migrate._config()
    with blank_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    assert migrate.current_revision(blank_db) == "0012"
    if pg:
        assert _insert_trigger(blank_db) == [("tr_jobs_count", "ROW")]
    write_some()
    assert _counts_are_exact(blank_db)[("t", "default", "queued", "normal", "a")] == 9


def test_0014_counts_existing_jobs_by_hour_and_back(blank_db: Database) -> None:
    """0014 fills ``job_hour_counts`` from the jobs already there (per hour, project,
    submitter and state, with their seqs' bounds); its triggers then keep it exact
    through batches, single inserts, changes of state, moves and deletes; the store
    answers a range's counts from it; the downgrade drops it and its triggers."""
    from collections import Counter
    from datetime import timedelta

    from jobyard.domain.jobs import JobFilter, JobSpec
    from jobyard.domain.states import JobState
    from jobyard.store.jobs import JobStore, NewJob, _insert_many
    from jobyard.store.tables import HOUR_STATES, jobs

    base = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

    def new(minutes: int, by: str | None, state: JobState = JobState.QUEUED) -> NewJob:
        spec = JobSpec(entrypoint="true", submitted_by=by)
        return NewJob("t", spec, state, 0.0, base + timedelta(minutes=minutes), None, "")

    def kept() -> dict[tuple[object, ...], int]:
        cols = ", ".join(f"SUM({s})" for s in HOUR_STATES)
        with blank_db.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    f"SELECT tenant_id, project_id, submitted_by, MIN(min_seq), MAX(max_seq),"
                    f" {cols} FROM job_hour_counts GROUP BY tenant_id, hour, project_id,"
                    " submitted_by ORDER BY MIN(min_seq)"
                )
            ).all()
        return {
            (*r[:5], s): int(n) for r in rows for s, n in zip(HOUR_STATES, r[5:], strict=True) if n
        }

    migrate.upgrade(blank_db, "0013")
    with blank_db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=base))
        _insert_many(conn, [new(0, "a"), new(1, "a"), new(59, None), new(60, "a")])
        _insert_many(conn, [new(61, "b", JobState.SCHEDULED), new(5, "a")])
    migrate.upgrade(blank_db)
    assert kept() == {
        ("t", "default", "a", 1, 6, "queued"): 3,  # 10:00–10:59, seqs 1, 2, 6
        ("t", "default", "", 3, 3, "queued"): 1,
        ("t", "default", "a", 4, 4, "queued"): 1,  # 11:00
        ("t", "default", "b", 5, 5, "scheduled"): 1,
    }
    with blank_db.write() as conn:
        _insert_many(conn, [new(120, "a"), new(121, "a"), new(2, None)])  # seqs 7–9
        new(62, "b").insert(conn)  # seq 10
        conn.execute(jobs.update().where(jobs.c.seq == 1).values(state="cancelled"))
        conn.execute(jobs.update().where(jobs.c.seq == 5).values(submitted_by="a"))
        conn.execute(jobs.delete().where(jobs.c.seq == 8))
    assert kept() == {
        ("t", "default", "a", 1, 6, "queued"): 2,
        ("t", "default", "a", 1, 6, "cancelled"): 1,
        ("t", "default", "", 3, 9, "queued"): 2,
        ("t", "default", "a", 4, 5, "queued"): 1,
        ("t", "default", "a", 4, 5, "scheduled"): 1,  # moved from "b"
        ("t", "default", "b", 5, 10, "queued"): 1,
        ("t", "default", "a", 7, 8, "queued"): 1,  # one of two deleted: bounds stay
    }
    store = JobStore(blank_db)
    whole = JobFilter(created_from=base, created_to=base + timedelta(hours=2, minutes=30))
    assert store.count_by_state("t", whole) == {"queued": 7, "cancelled": 1, "scheduled": 1}
    with blank_db.engine.connect() as conn:
        states = conn.execute(sa.text("SELECT state FROM jobs")).scalars().all()
    assert dict(Counter(states)) == {"queued": 7, "cancelled": 1, "scheduled": 1}

    cfg = migrate._config()
    with blank_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    assert migrate.current_revision(blank_db) == "0013"
    with blank_db.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("job_hour_counts")
    with blank_db.write() as conn:
        new(3, "a").insert(conn)  # no trigger left that writes to the dropped table
        conn.execute(jobs.update().where(jobs.c.seq == 2).values(state="failed"))
    assert _counts_are_exact(blank_db)[("t", "default", "queued", "normal", "")] == 7


def _count_triggers(db: Database) -> list[tuple[str, str, str]]:
    """(name, event, level) of the triggers on ``jobs`` (PostgreSQL)."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT trigger_name, event_manipulation, action_orientation"
                " FROM information_schema.triggers WHERE event_object_table = 'jobs'"
            )
        ).all()
    return sorted((str(n), str(e), str(level)) for n, e, level in rows)


def test_0015_counts_with_one_function_per_change_and_back(blank_db: Database) -> None:
    """0015 (PostgreSQL: one trigger function for inserts, one for changes and deletes,
    each backend on counter rows of its own) keeps both count tables exact across it and
    its downgrade, which puts 0013's and 0014's triggers back. SQLite: nothing changes."""
    from jobyard.domain.jobs import JobSpec
    from jobyard.domain.states import JobState
    from jobyard.store.jobs import NewJob, _insert_many
    from jobyard.store.tables import HOUR_STATES

    now = datetime.now(UTC)

    def new(job_type: str | None, state: JobState = JobState.QUEUED) -> NewJob:
        spec = JobSpec(entrypoint="true", job_type=job_type, submitted_by=job_type)
        return NewJob("t", spec, state, 0.0, now, None, "")

    def write_some() -> None:
        with blank_db.write() as conn:
            _insert_many(conn, [new("a"), new(None), new("a"), new("b", JobState.SCHEDULED)])
            new("a").insert(conn)
            conn.execute(sa.text("UPDATE jobs SET state = 'cancelled' WHERE job_type = 'b'"))
            conn.execute(sa.text("UPDATE jobs SET submitted_by = 'c' WHERE job_type IS NULL"))
            conn.execute(sa.text("DELETE FROM jobs WHERE seq = (SELECT min(seq) FROM jobs)"))

    def hours_are_exact() -> None:
        cells = ", ".join(f"SUM({s})" for s in HOUR_STATES)
        with blank_db.engine.connect() as conn:
            kept = conn.execute(
                sa.text(f"SELECT submitted_by, {cells} FROM job_hour_counts GROUP BY submitted_by")
            ).all()
            jobs_by = conn.execute(
                sa.text(
                    "SELECT COALESCE(submitted_by, ''), state, count(*) FROM jobs GROUP BY 1, 2"
                )
            ).all()
        found = {
            (r[0], s): int(n) for r in kept for s, n in zip(HOUR_STATES, r[1:], strict=True) if n
        }
        assert found == {(str(by), str(s)): int(n) for by, s, n in jobs_by}

    pg = blank_db.dialect == "postgresql"
    migrate.upgrade(blank_db, "0014")
    with blank_db.write() as conn:
        conn.execute(tenants.insert().values(id="t", name="t", created_at=now))
    write_some()
    migrate.upgrade(blank_db, "0015")
    if pg:
        assert _count_triggers(blank_db) == [
            ("tr_jobs_counts", "DELETE", "ROW"),
            ("tr_jobs_counts", "UPDATE", "ROW"),
            ("tr_jobs_counts_insert", "INSERT", "STATEMENT"),
        ]
    write_some()
    assert _counts_are_exact(blank_db) == {
        ("t", "default", "queued", "normal", "a"): 5,  # seqs 1 and 2 deleted
        ("t", "default", "queued", "normal", ""): 1,
        ("t", "default", "cancelled", "normal", "b"): 2,
    }
    hours_are_exact()

    cfg = migrate._config()
    with blank_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0014")
    assert migrate.current_revision(blank_db) == "0014"
    if pg:
        assert [t[0] for t in _count_triggers(blank_db)] == [
            "tr_jobs_count",
            "tr_jobs_count",
            "tr_jobs_count_insert",
            "tr_jobs_hour_count",
            "tr_jobs_hour_count",
            "tr_jobs_hour_count_insert",
        ]
    write_some()
    assert _counts_are_exact(blank_db)[("t", "default", "queued", "normal", "a")] == 7
    hours_are_exact()
