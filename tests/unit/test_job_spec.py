"""``JobSpec.evolve`` and ``Job.evolve``: the same value ``dataclasses.replace`` gives,
without a new ``__init__`` call; a just-inserted job and its id."""

from __future__ import annotations

import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from jobyard.domain.jobs import Job, JobSpec
from jobyard.domain.priorities import Priority
from jobyard.domain.states import JobState
from jobyard.store.jobs import NewJob, new_job_id


def test_evolve_is_replace() -> None:
    spec = JobSpec(entrypoint="echo", parameters={"a": 1}, priority=Priority.HIGH)
    changes: dict[str, Any] = {
        "submitted_by": "key",
        "project_id": "p1",
        "scheduled_at": datetime(2030, 1, 1, tzinfo=UTC),
    }
    got = spec.evolve(**changes)
    assert got == replace(spec, **changes)
    assert type(got) is JobSpec
    assert {f.name: getattr(got, f.name) for f in fields(JobSpec)} == {
        f.name: getattr(replace(spec, **changes), f.name) for f in fields(JobSpec)
    }
    assert spec.submitted_by is None and spec.project_id != "p1"  # the original as it was
    with pytest.raises(AttributeError):
        got.name = "frozen"  # type: ignore[misc]


def test_evolve_refuses_a_name_that_is_no_field() -> None:
    with pytest.raises(TypeError, match="no field bogus"):
        JobSpec().evolve(bogus=1)


def test_job_evolve_is_replace() -> None:
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    job = NewJob("t1", JobSpec(entrypoint="true"), JobState.QUEUED, 1.0, now, None, "q").job(1)
    changes: dict[str, Any] = {"id": "j1", "seq": 7, "state": JobState.RUNNING, "pid": 42}
    got = job.evolve(**changes)
    assert got == replace(job, **changes) and type(got) is Job
    assert job.id != "j1" and job.pid is None  # the original as it was
    with pytest.raises(TypeError, match="Job has no field bogus"):
        job.evolve(bogus=1)


def test_job_ids_are_version_4_uuids() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert {t[19] for t in ids} == set("89ab")
