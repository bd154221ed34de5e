"""One source for a job's fields: the store's insert values and row mapping are worked
out from the domain dataclass, so every field of ``JobSpec`` (a new one too) goes into
its column and comes back unchanged, on both databases."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobFilter, JobSpec
from jobyard.domain.states import JobState
from tests.conftest import ServicesFactory

ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def _value(name: str, hint: Any) -> Any:
    """A value of type ``hint`` that differs from every field's default."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _value(name, args[0])
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if typing.get_origin(item) is dict:
            return ({"role": "r", "value": 1}, {"role": "s", "folder_id": "f"})
        return ("a", "b")
    if origin is dict:
        return {"k": "v", "n": "1"}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return list(hint)[-1]
    if hint is bool:
        return True
    if hint is int:
        return 3
    if hint is float:
        return 2.5
    if hint is datetime:
        return datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    if hint is str:
        return f"v-{name}"[:36]
    raise AssertionError(f"no test value for {name}: {hint}")


def _every_field_set() -> JobSpec:
    hints = typing.get_type_hints(JobSpec)
    values = {f.name: _value(f.name, hints[f.name]) for f in dataclasses.fields(JobSpec)}
    spec = JobSpec(**values)
    for f in dataclasses.fields(JobSpec):
        default = f.default_factory() if callable(f.default_factory) else f.default
        assert getattr(spec, f.name) != default, f.name
    return spec


def test_every_field_of_a_spec_goes_into_its_column_and_back(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False)
    store = services.jobs.store
    spec = _every_field_set()
    now = services.clock.now()
    job, created = store.insert(
        tenant_id="default",
        spec=spec,
        state=JobState.SCHEDULED,
        sort_key=1.0,
        now=now,
        request_hash=None,
        message="m",
    )
    assert created and job.spec == spec
    assert store.get("default", job.id).spec == spec
    assert store.list_jobs("default", JobFilter(), limit=1, cursor=None)[0][0].spec == spec


def test_empty_lists_come_back_empty_and_defaults_stay(make_services: ServicesFactory) -> None:
    """An empty ``retry_on`` (retry on nothing) is not its default; empty bindings and
    packages are."""
    services = make_services(start=False)
    spec = JobSpec(entrypoint="true", retry_on=(), scheduled_at=datetime(2099, 1, 1, tzinfo=UTC))
    job, _ = services.jobs.submit(ADMIN, spec)
    stored = services.jobs.get(ADMIN, job.id).spec
    assert (stored.retry_on, stored.input_bindings, stored.packages) == ((), (), ())
    assert stored.parameters == {} and stored.argv is None
    plain = services.jobs.get(ADMIN, services.jobs.submit(ADMIN, JobSpec(entrypoint="true"))[0].id)
    assert plain.spec.retry_on == JobSpec().retry_on
