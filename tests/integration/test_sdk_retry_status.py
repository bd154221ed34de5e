"""``Client.retry`` and ``Client.system_status`` against a real HTTP server, on both
databases: typed answers and the SDK's error classes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jobyard.sdk import Client, Conflict, NotFound, SandboxStatus, SystemStatus
from tests.conftest import GATES, LiveServer, wait_for

PY = sys.executable


def test_retry_makes_a_linked_job_with_merged_parameters(
    live: LiveServer, client: Client, tmp_path: Path
) -> None:
    code = "import json,sys; p=json.load(open('parameters.json')); sys.exit(0 if p['x'] > 1 else 1)"
    job = client.submit([PY, "-c", code], parameters={"x": 1, "keep": "yes"}, timeout_s=60)
    assert client.wait(job.id, timeout=30).status == "failed"

    new = client.retry(
        job.id, parameters={"x": 2}, priority="high", reason="fixed input", timeout_s=30
    )
    assert (new.retry_of, new.retry_reason, new.priority) == (job.id, "fixed input", "high")
    assert new.parameters == {"x": 2, "keep": "yes"}
    assert new.timeout_s == 30
    assert client.wait(new.id, timeout=30).status == "succeeded"
    assert client.get(job.id).retries == [new.id]

    plain = client.retry(job.id)  # no changes: the old job as it was
    assert plain.parameters == {"x": 1, "keep": "yes"} and plain.priority == "normal"
    assert client.wait(plain.id, timeout=30).status == "failed"
    assert client.get(job.id).retries == [new.id, plain.id]

    gate = tmp_path / GATES / "gate"
    running = client.submit(
        [PY, "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    wait_for(lambda: client.get(running.id).status == "running")
    try:
        with pytest.raises(Conflict, match="only an ended job can be retried"):
            client.retry(running.id)
    finally:
        gate.touch()
    client.wait(running.id, timeout=30)
    with pytest.raises(NotFound):
        client.retry("no-such-job")


def test_system_status_is_typed(live: LiveServer, client: Client) -> None:
    done = client.wait(client.submit([PY, "-c", "pass"]).id, timeout=30)
    status = client.system_status()
    assert isinstance(status, SystemStatus)
    assert status.system_status == "healthy"
    assert [n.node_id for n in status.execution_nodes] == [live.services.node_id]
    assert status.execution_nodes[0].job_capacity == 2
    assert status.queue_statistics.by_priority.high == 0
    assert status.performance_metrics.by_outcome.succeeded == 1
    assert status.resource_utilization.total_slots == 2
    assert isinstance(status.sandbox, SandboxStatus)
    assert status.sandbox.jobs_sandboxed == live.services.sandbox.sandboxed
    assert done.status == "succeeded"
