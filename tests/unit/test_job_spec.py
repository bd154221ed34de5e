"""``JobSpec.evolve``: the same value ``dataclasses.replace`` gives, without a new
``__init__`` call."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from jobyard.domain.jobs import JobSpec
from jobyard.domain.priorities import Priority


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
