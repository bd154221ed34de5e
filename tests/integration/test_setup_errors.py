"""A job whose files cannot be made on the node (here: a file stands where its
directory goes) fails at once with the error in its message and its log, retried
where it allows it; it is not left ``starting`` until its lease expires. Both
databases, a real dispatcher."""

from __future__ import annotations

import sys

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import ErrorType, JobSpec
from jobyard.domain.states import JobState
from tests.conftest import ServicesFactory, wait_for

ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def test_a_job_whose_directory_cannot_be_made_fails_with_the_reason(
    make_services: ServicesFactory,
) -> None:
    services = make_services(start=False, lease_ttl_s=3600.0)
    job, _ = services.jobs.submit(
        ADMIN, JobSpec(argv=(sys.executable, "-c", "pass"), max_attempts=2, retry_backoff_s=0.0)
    )
    jobs_dir = services.settings.data_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    (jobs_dir / job.id).write_text("not a directory")
    services.start()

    done = wait_for(lambda: (j := services.jobs.get(ADMIN, job.id)).is_terminal and j)
    assert done.state is JobState.FAILED
    assert done.attempt == 2  # retried, and failed the same way again
    assert done.error_type == ErrorType.ENTRYPOINT_COMMAND_START_ERROR.value
    assert done.message is not None and "NotADirectoryError" in done.message
    assert services.dispatcher is not None
    wait_for(lambda: services.dispatcher is not None and services.dispatcher.running_count() == 0)
