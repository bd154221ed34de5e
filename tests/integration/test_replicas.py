"""Several nodes on one PostgreSQL database."""

from __future__ import annotations

import sys

import pytest

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import JobState
from tests.conftest import ServicesFactory, wait_for

ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


@pytest.fixture
def pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database; SQLite is single-host")


@pytest.mark.usefixtures("pg_only")
def test_submit_on_api_node_wakes_worker_node(make_services: ServicesFactory) -> None:
    api = make_services(run_dispatcher=False, node_id="api-node")
    # polls only every minute: the job can only start quickly if NOTIFY woke it
    worker = make_services(node_id="worker-node", poll_interval_s=60.0)
    assert api.dispatcher is None and worker.dispatcher is not None
    wait_for(lambda: worker.dispatcher is not None and worker.dispatcher._listener is not None)
    job, _ = api.jobs.submit(ADMIN, JobSpec(argv=(sys.executable, "-c", "pass")))
    done = wait_for(lambda: (j := api.jobs.get(ADMIN, job.id)).is_terminal and j, timeout=20)
    assert done.state is JobState.SUCCEEDED
    assert done.node_id == "worker-node"


@pytest.mark.usefixtures("pg_only")
def test_cancel_through_another_replica(make_services: ServicesFactory) -> None:
    worker = make_services(node_id="worker-node")
    api = make_services(run_dispatcher=False, node_id="api-node")
    job, _ = api.jobs.submit(
        ADMIN, JobSpec(argv=(sys.executable, "-c", "import time; time.sleep(60)"))
    )
    wait_for(lambda: api.jobs.get(ADMIN, job.id).state is JobState.RUNNING)
    api.jobs.cancel(ADMIN, job.id, force=True)
    done = wait_for(lambda: (j := api.jobs.get(ADMIN, job.id)).is_terminal and j, timeout=20)
    assert done.state is JobState.CANCELLED
    assert worker.dispatcher is not None and worker.dispatcher.running_count() == 0
