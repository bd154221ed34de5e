"""The fencing relation of the lease settings, and the fence watch's choice of attempts."""

from __future__ import annotations

import queue
import time
from datetime import UTC, datetime

import pytest

from jobyard.dispatch.attempt import Attempt, Attempts
from jobyard.dispatch.fencing import FenceWatch, LeaseSettingsError, check_lease_settings
from jobyard.domain.jobs import Job, JobSpec, ResourceUsage
from jobyard.domain.states import JobState
from jobyard.settings import Settings

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_the_shipped_settings_keep_the_fencing_guarantee() -> None:
    settings = Settings()
    check_lease_settings(settings)
    assert settings.outage_tolerance_s >= 30
    assert settings.lease_ttl_s >= settings.outage_tolerance_s + 2


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"lease_ttl_s": 20.0}, ("lease_ttl_s (20 s)", "outage_tolerance_s (35 s)")),
        ({"lease_ttl_s": 36.0}, ("lease_ttl_s (36 s)", "outage_tolerance_s (35 s) + 2 s")),
        (
            {"outage_tolerance_s": 3.0, "heartbeat_interval_s": 2.0},
            ("outage_tolerance_s (3 s)", "heartbeat_interval_s (2 s)"),
        ),
    ],
)
def test_settings_that_break_it_are_refused_naming_them(
    changes: dict[str, float], names: tuple[str, ...]
) -> None:
    with pytest.raises(LeaseSettingsError) as info:
        check_lease_settings(Settings(**changes))  # type: ignore[arg-type]
    for name in names:
        assert name in info.value.message


def _attempt(job_id: str, renewed: float, exit_code: int | None = None) -> Attempt:
    job = Job(
        id=job_id,
        seq=1,
        tenant_id="t",
        spec=JobSpec(argv=("true",)),
        state=JobState.RUNNING,
        attempt=1,
        lease_epoch=1,
        lease_owner="node-a",
        lease_expires_at=None,
        created_at=NOW,
        updated_at=NOW,
        queued_at=NOW,
        started_at=NOW,
        ended_at=None,
        exit_code=None,
        error_type=None,
        message=None,
        pid=None,
        node_id="node-a",
        cancel_force=False,
        usage=ResourceUsage(),
    )
    return Attempt(job=job, renewed_mono=renewed, exit_code=exit_code)


def test_the_fence_watch_stops_each_unrenewed_running_attempt_once() -> None:
    attempts = Attempts(slots=4)
    for a in (
        _attempt("fresh", renewed=95.0),
        _attempt("stale", renewed=60.0),
        _attempt("exited", renewed=60.0, exit_code=0),  # its end waits: nothing to stop
    ):
        attempts.add(a)
    fenced: list[tuple[str, float]] = []
    watch = FenceWatch(attempts, 35.0, lambda a, s: fenced.append((a.job.id, s)))
    assert watch.check(100.0) == 95.0 + 35.0  # when "fresh" is due
    watch.check(101.0)
    assert fenced == [("stale", 40.0)]


def test_the_fence_watch_wakes_for_a_new_attempt_and_at_its_deadline() -> None:
    attempts = Attempts(slots=4)
    fenced: queue.Queue[str] = queue.Queue()
    watch = FenceWatch(attempts, 35.0, lambda a, s: fenced.put(a.job.id))
    watch.start()  # no attempt: it waits for one
    try:
        attempts.add(_attempt("later", renewed=time.monotonic()))  # due in 35 s
        attempts.add(_attempt("overdue", renewed=time.monotonic() - 40.0))
        assert fenced.get(timeout=30) == "overdue"
        attempts.add(_attempt("due soon", renewed=time.monotonic() - 34.8))  # before "later"
        assert fenced.get(timeout=30) == "due soon"
    finally:
        watch.stop(5)
