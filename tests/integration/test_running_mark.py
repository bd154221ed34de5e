"""A start's running mark waits (up to ``RUNNING_MARK_DELAY_S``) for its attempt's end:
a short job's mark and end are written together, and a step that other work triggers
meanwhile (another job's claim and end) does not mark it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jobyard.dispatch import claimer
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import TERMINAL, JobState
from tests.conftest import GATES, ServicesFactory, wait_for

PY = sys.executable
ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def test_a_young_start_is_marked_with_its_end_not_by_other_steps(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(claimer, "RUNNING_MARK_DELAY_S", 3600.0)  # no mark by the timer
    services = make_services(slots=2)
    jobs = services.jobs
    gate = tmp_path / GATES / "go"
    wait = f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)"
    dispatcher = services.dispatcher
    assert dispatcher is not None
    held, _ = jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", wait)))
    # its process runs (the node holds its handle), its mark is not written
    wait_for(lambda: (a := dispatcher.attempts.get(held.id)) is not None and a.handle)
    quick, _ = jobs.submit(ADMIN, JobSpec(argv=(PY, "-c", "pass")))  # claimed, run, ended
    wait_for(lambda: jobs.get(ADMIN, quick.id).state in TERMINAL)
    assert jobs.get(ADMIN, quick.id).state is JobState.SUCCEEDED
    # two steps ran since the held job started (the quick job's claim, its end): neither
    # marked it running
    assert jobs.get(ADMIN, held.id).state is JobState.STARTING

    gate.touch()
    wait_for(lambda: jobs.get(ADMIN, held.id).state in TERMINAL)
    done = jobs.get(ADMIN, held.id)
    assert done.state is JobState.SUCCEEDED
    assert done.started_at is not None and done.pid
    states = [e.to_state for e in jobs.events(ADMIN, held.id) if e.kind == "state"]
    assert states[-2:] == ["running", "succeeded"]  # an event per transition, in order
