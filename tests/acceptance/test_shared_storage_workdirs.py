"""A node with a shared storage (``--storage-url``) removes an ended job's working
directory once the job's log and results are on the storage (nothing reads it any more;
on many nodes the inputs and outputs of ended jobs would pile up on each). Its log,
results and downloads are still served. Without a shared storage the working directory
stays, as before (the node's own data directory is the storage)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.acceptance.serverproc import StartServer

pytestmark = pytest.mark.acceptance

JOB = (
    "mkdir -p output && echo 42 > output/result.txt && head -c 100000 /dev/zero > big.bin"
    " && echo the job ran"
)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-storage", "local"])
def test_an_ended_jobs_working_directory_goes_once_its_files_are_on_the_storage(
    db_url: str, start_server: StartServer, tmp_path: Path, shared: bool
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the node's files are what is tested; the database does not matter")
    args = ("--storage-url", str(tmp_path / "shared")) if shared else ()
    server = start_server(*args)
    api_key = json.loads((server.home / "credentials.json").read_text())["api_key"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as http:
        r = http.post("/v1/jobs", json={"entrypoint": ["/bin/sh", "-c", JOB]})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = server.wait_status(job_id, {"succeeded", "failed", "cancelled", "timed_out"}, 60)
        assert job["status"] == "succeeded", job
        (job_dir,) = server.home.rglob(f"jobs/{job_id}")
        assert (job_dir / "work").exists() is not shared, sorted(job_dir.rglob("*"))
        assert (job_dir / "logs").is_dir()  # the node's own log stays (small)
        assert "the job ran" in http.get(f"/v1/jobs/{job_id}/logs").text
        r = http.get(f"/v1/jobs/{job_id}/results/files/result.txt")
        assert (r.status_code, r.text) == (200, "42\n")
        r = http.get(f"/v1/jobs/{job_id}/results", params={"format": "download"})
        assert r.status_code == 200 and r.content[:2] == b"PK"
