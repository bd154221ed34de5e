"""A node's roles set through the environment, as a container or a service unit sets
them: ``JOBYARD_RUN_API=0`` makes ``jobyard serve`` a node that runs jobs and serves
no HTTP (``--no-api`` is covered in test_many_nodes.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.serverproc import (
    JOBYARD,
    Server,
    StartServer,
    _clean_env,
    _free_port,
)

pytestmark = pytest.mark.acceptance


class _JobsOnlyNode(Server):
    """A ``jobyard serve`` without an HTTP server: ready once the API node lists it."""

    def __init__(self, api: Server, node_id: str, log_path: Path) -> None:
        env = {"JOBYARD_RUN_API": "0", "JOBYARD_NODE_ID": node_id}
        super().__init__(api.home, api.db_url, log_path, _free_port(), env=env)
        self.api, self.node_id = api, node_id

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"jobyard serve exited early with code {self.proc.returncode}")
        nodes = self.api.system_status()["execution_nodes"]
        return any(n["node_id"] == self.node_id for n in nodes)


def _submit(api: Server, body: dict[str, Any]) -> str:
    key = json.loads((api.home / "credentials.json").read_text())["api_key"]
    r = httpx.post(
        f"{api.url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def test_run_api_0_runs_jobs_without_an_http_server(
    start_server: StartServer, tmp_path: Path
) -> None:
    api = start_server("--no-dispatcher")
    node = _JobsOnlyNode(api, "jobs-only", tmp_path / "jobs-only.log")
    try:
        node.start()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{node.url}/healthz", timeout=2)
        job_id = _submit(api, {"entrypoint": "echo from the jobs-only node"})
        job = api.wait_status(job_id, {"succeeded", "failed"}, timeout=60)
        assert (job["status"], job["node_id"]) == ("succeeded", "jobs-only")
    finally:
        node.stop()
    assert "dispatching only (no API)" in node.log_path.read_text()


def test_run_api_0_with_no_dispatcher_is_refused(tmp_path: Path) -> None:
    """Both roles off leaves the node nothing to do: refused at once, not a silent
    process (which is what an ignored ``JOBYARD_RUN_API`` would give)."""
    home = tmp_path / "home"
    done = subprocess.run(
        [JOBYARD, "serve", "--no-dispatcher", "--port", str(_free_port())],
        env={**_clean_env(home), "JOBYARD_RUN_API": "0"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--no-api and --no-dispatcher together" in done.stderr
