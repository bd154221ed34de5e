"""The mindzie Job Execution API (spec 001) walked the way the spec's Python
``ExecutionManager`` example calls it (same paths, fields and usage), on both databases."""

from __future__ import annotations

import inspect
import io
import re
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobyard.api.compat import mindzie
from jobyard.domain.auth import Role
from tests.conftest import GATES, LiveServer, wait_for

pytestmark = pytest.mark.compat

PY = sys.executable
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SPOKEN = re.compile(r"^(\d+ hours? ?)?(\d+ minutes? ?)?(\d+ seconds?)?$")
SIZE = re.compile(r"^\d+(\.\d+)? (B|KB|MB|GB|TB)$")
WARNING = "Some timestamps had to be inferred"


class ExecutionManager:
    """The spec's Python example with httpx for requests (methods, paths and fields kept)."""

    def __init__(self, base_url: str, tenant_id: str, project_id: str, token: str) -> None:
        self.base_url, self.tenant_id, self.project_id = base_url, tenant_id, project_id
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.prefix = f"{base_url}/api/{tenant_id}/{project_id}/execution"

    def submit_job(
        self,
        job_name: str,
        job_type: str,
        resource_type: str,
        resource_id: str,
        parameters: dict[str, Any] | None = None,
        priority: str = "Normal",
    ) -> Any:
        payload = {
            "jobName": job_name,
            "jobType": job_type,
            "priority": priority,
            "resource": {"resourceType": resource_type, "resourceId": resource_id},
            "parameters": parameters or {},
            "scheduling": {"executeImmediately": True, "timeoutMinutes": 120},
            "notifications": {"onCompletion": True, "onFailure": True},
        }
        return httpx.post(f"{self.prefix}/job", json=payload, headers=self.headers).json()

    def get_job_status(self, job_id: str) -> Any:
        return httpx.get(f"{self.prefix}/job/{job_id}", headers=self.headers).json()

    def list_jobs(
        self,
        status: str | None = None,
        job_type: str | None = None,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> Any:
        params: dict[str, Any] = {"page": page, "pageSize": page_size}
        if status:
            params["status"] = status
        if job_type:
            params["jobType"] = job_type
        if date_from:
            params["dateFrom"] = date_from.isoformat()
        if date_to:
            params["dateTo"] = date_to.isoformat()
        return httpx.get(f"{self.prefix}/jobs", params=params, headers=self.headers).json()

    def wait_for_completion(
        self, job_id: str, poll_interval: float = 30, timeout: float = 60
    ) -> Any:
        start_time = time.time()
        while time.time() - start_time < timeout:
            job = self.get_job_status(job_id)
            print(f"Job {job_id}: {job['status']} ({job['progress']['percentage']}%)")
            print(f"  Current stage: {job['progress']['currentStage']}")
            print(f"  Elapsed time: {job['progress']['elapsedTime']}")
            if job["status"] in ["Completed", "Failed", "Cancelled"]:
                return job
            time.sleep(poll_interval)
        raise TimeoutError(f"Job {job_id} did not complete within {timeout} seconds")

    def get_job_results(
        self, job_id: str, format_type: str = "detailed", include_artifacts: bool = True
    ) -> Any:
        params = {"format": format_type, "includeArtifacts": str(include_artifacts).lower()}
        url = f"{self.prefix}/job/{job_id}/results"
        return httpx.get(url, params=params, headers=self.headers).json()

    def cancel_job(
        self, job_id: str, reason: str = "User cancellation", force: bool = False
    ) -> bool:
        payload = {"reason": reason, "forceTermination": force, "preservePartialResults": True}
        url = f"{self.prefix}/job/{job_id}"
        return httpx.request("DELETE", url, json=payload, headers=self.headers).status_code == 200

    def retry_job(
        self,
        job_id: str,
        reason: str = "Retry after failure",
        priority: str | None = None,
        modify_params: dict[str, Any] | None = None,
    ) -> Any:
        payload: dict[str, Any] = {
            "retryReason": reason,
            "modifyParameters": modify_params is not None,
            "immediateExecution": False,
        }
        if priority:
            payload["priority"] = priority
        if modify_params:
            payload["updatedParameters"] = modify_params
        url = f"{self.prefix}/job/{job_id}/retry"
        return httpx.post(url, json=payload, headers=self.headers).json()

    def get_system_status(self) -> Any:
        url = f"{self.base_url}/api/{self.tenant_id}/execution/system/status"
        return httpx.get(url, headers=self.headers).json()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """What the example does not call: ``path`` under ``…/execution``."""
        return httpx.request(method, self.prefix + path, headers=self.headers, **kwargs)


def expected_files(rows: int, kind: str) -> dict[str, bytes]:
    """What the analysis job writes into output/ (its source is part of the job)."""
    import pickle

    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><rect width="{rows}"/></svg>\n'
    return {
        "report.html": f"<html><h1>{kind} analysis</h1></html>\n".encode(),
        "data.csv": ("id,value\n" + "".join(f"{i},{i * i}\n" for i in range(rows))).encode(),
        "model.pkl": pickle.dumps({"rows": rows, "kind": kind}, protocol=4),
        "chart.svg": svg.encode(),
    }


ANALYSIS = (
    inspect.getsource(expected_files)
    + f"""
import json, os, pathlib, time
params = json.loads(os.environ["JOBYARD_PARAMETERS"])
def mark(**fields):
    print("::jobyard::" + json.dumps(fields), flush=True)
mark(type="progress", percent=10, stage="Loading Data")
mark(type="metrics", records_processed=0, total_records=params["rows"])
mark(type="progress", percent=50, stage="Data Processing")
while not pathlib.Path(params["gate"]).exists():
    time.sleep(0.02)
for name, data in expected_files(params["rows"], params["analysisType"]).items():
    pathlib.Path("output", name).write_bytes(data)
mark(type="warning", category="DataQuality", message="{WARNING}")
mark(type="metrics", records_processed=params["rows"], errors=0)
mark(type="progress", percent=100, stage="Writing Outputs")
"""
)
ENDLESS = """import json, pathlib, time
pathlib.Path("output", "partial.csv").write_text("id\\n1\\n")
print("::jobyard::" + json.dumps({"type": "progress", "percent": 30}), flush=True)
time.sleep(600)
"""


@pytest.fixture
def base(live: LiveServer) -> str:
    """The server's URL, with the mindzie router mounted unless the app already has it."""
    app = live.server.config.app
    assert isinstance(app, FastAPI)
    if "/api/{tenantId}/{projectId}/execution/job" not in {
        getattr(r, "path", "") for r in app.routes
    }:
        app.include_router(mindzie.router)
    return live.url


def _pick(obj: dict[str, Any], keys: str) -> list[Any]:
    return [obj[k] for k in keys.split()]


def _native(live: LiveServer, path: str) -> Any:
    auth = {"Authorization": f"Bearer {live.admin_key}"}
    return httpx.get(f"{live.url}/v1/jobs/{path}", headers=auth).json()


def _later() -> dict[str, Any]:
    return {"scheduledTime": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}


def _at(m: ExecutionManager, job_id: str, percent: int) -> Any:
    return wait_for(
        lambda: (j := m.get_job_status(job_id))["progress"]["percentage"] == percent and j
    )


def test_usage_example_workflow(base: str, live: LiveServer, tmp_path: Path) -> None:
    manager = ExecutionManager(base, "default", "default", live.admin_key)
    system_status = manager.get_system_status()
    print(f"System Status: {system_status['systemStatus']}")
    print(f"Jobs in queue: {system_status['queueStatistics']['totalQueuedJobs']}")
    print(f"Average wait time: {system_status['queueStatistics']['averageWaitTime']}")
    assert system_status["systemStatus"] == "Healthy" and ISO.match(system_status["timestamp"])
    [node] = system_status["executionNodes"]
    assert _pick(node, "nodeId status activeJobs jobCapacity") == ["test-node", "Active", 0, 2]
    assert system_status["queueStatistics"]["totalQueuedJobs"] == 0
    assert SIZE.match(system_status["resourceUtilization"]["totalMemoryCapacity"])

    gate = tmp_path / GATES / "gate"
    job_params = {
        "datasetId": "dataset-guid",
        "analysisType": "comprehensive",
        "timeWindow": {"startDate": "2024-01-01", "endDate": "2024-01-31"},
        "rows": 3,
        "gate": str(gate),
        "entrypoint": [PY, "-c", ANALYSIS],  # what runs (jobyard extension)
    }
    job = manager.submit_job("Analytics", "ProcessMining", "Pipeline", "p-1", job_params, "High")
    print(f"Submitted job: {job['jobId']}")
    print(f"Queue position: {job['queuePosition']}")
    print(f"Estimated start: {job['estimatedStartTime']}")
    assert _pick(job, "status priority queuePosition jobName") == ["Queued", "High", 1, "Analytics"]
    assert ISO.match(job["estimatedStartTime"]) and ISO.match(job["dateSubmitted"])
    assert job["estimatedDuration"] is None and job["submittedBy"] == "tester"  # no history yet
    running = _at(manager, job["jobId"], 50)
    assert _pick(running, "status projectId jobType") == ["Running", "default", "ProcessMining"]
    progress = running["progress"]
    assert progress["currentStage"] == "Data Processing" and SPOKEN.match(progress["elapsedTime"])
    assert ISO.match(progress["estimatedCompletion"]) and "entrypoint" not in running["parameters"]
    assert running["resource"] == {
        "resourceType": "Pipeline",
        "resourceId": "p-1",
        "resourceName": None,
    }
    assert running["execution"]["executionNode"] == "test-node"
    assert _pick(running["metrics"], "recordsProcessed totalRecords") == [0, 3]

    gate.touch()
    final_job = manager.wait_for_completion(job["jobId"], poll_interval=0.05)
    assert _pick(final_job, "status error") == ["Completed", None]
    assert _pick(final_job["progress"], "percentage currentStage") == [100, "Writing Outputs"]
    assert _pick(final_job["metrics"], "recordsProcessed warningCount errorCount") == [3, 1, 0]
    assert final_job["metrics"]["averageProcessingRate"].endswith(" records/second")

    results = manager.get_job_results(job["jobId"])
    print("Job completed successfully!")
    print(f"Records processed: {results['summary']['recordsProcessed']:,}")
    print(f"Data quality score: {results['summary']['dataQualityScore']}")
    print(f"Processing efficiency: {results['summary']['processingEfficiency']}%")
    print(f"Download report: {results['results']['primaryOutput']['downloadUrl']}")
    for output in results["results"]["additionalOutputs"]:
        print(f"Download {output['type']}: {output['downloadUrl']}")
    assert _pick(results, "status success") == ["Completed", True]
    assert _pick(results["summary"], "recordsProcessed outputsGenerated") == [3, 4]
    primary, extra = results["results"]["primaryOutput"], results["results"]["additionalOutputs"]
    assert _pick(primary, "type title format") == ["Report", "report.html", "html"]
    assert {o["type"] for o in extra} == {"Dataset", "Model", "Visualization"}
    files = expected_files(3, "comprehensive")
    for o in [primary, *extra]:
        assert httpx.get(o["downloadUrl"], headers=manager.headers).content == files[o["title"]]
    assert [o["recordCount"] for o in extra if o["format"] == "csv"] == [3]
    warning = {"type": "DataQuality", "count": 1, "message": WARNING}
    assert results["qualityMetrics"]["warnings"] == [warning]
    assert SIZE.match(results["executionMetrics"]["peakMemoryUsage"])
    assert SPOKEN.match(results["totalDuration"]) and ISO.match(results["completionTime"])
    _other_result_formats(manager, job["jobId"], sorted(files))

    changes = {"rows": 5, "timeoutMinutes": 30}
    retried = manager.retry_job(job["jobId"], "More rows", "Low", changes)
    assert retried["jobId"] != job["jobId"] and retried["originalJobId"] == job["jobId"]
    assert _pick(retried, "retryReason priority") == ["More rows", "Low"]
    kept = {k: v for k, v in job_params.items() if k != "entrypoint"}
    assert retried["parameters"] == kept | {"rows": 5}
    assert _native(live, retried["jobId"])["timeout_s"] == 1800
    again = manager.wait_for_completion(retried["jobId"], poll_interval=0.05)
    assert again["status"] == "Completed"
    outputs = manager.get_job_results(retried["jobId"])["results"]["additionalOutputs"]
    assert [o["recordCount"] for o in outputs if o["format"] == "csv"] == [5]
    later = manager.submit_job("Next", "ProcessMining", "Pipeline", "p", {"entrypoint": "true"})
    assert re.match(r"^\d+(-\d+)? seconds?$", later["estimatedDuration"])  # now from history


def _other_result_formats(m: ExecutionManager, job_id: str, names: list[str]) -> None:
    summary = m.get_job_results(job_id, format_type="summary")
    assert summary["results"]["additionalOutputs"] is None and summary["qualityMetrics"] is None
    assert m.get_job_results(job_id, include_artifacts=False)["results"] is None
    path = f"/job/{job_id}/results"
    data = m.call("GET", path, params={"format": "detailed", "outputType": "data"}).json()
    assert data["results"]["primaryOutput"]["title"] == "data.csv"
    assert data["results"]["additionalOutputs"] == []
    assert m.call("GET", path, params={"outputType": "sounds"}).status_code == 422
    archive = m.call("GET", path, params={"format": "download"})
    assert sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == names


def test_cancel_running_and_queued_jobs(base: str, live: LiveServer) -> None:
    manager = ExecutionManager(base, "default", "default", live.admin_key)
    job_id = manager.call("POST", "/job", json={"command": [PY, "-c", ENDLESS]}).json()["jobId"]
    assert _at(manager, job_id, 30)["status"] == "Running"
    assert manager.call("POST", f"/job/{job_id}/retry", json={}).status_code == 409  # not ended

    assert manager.cancel_job(job_id, reason="User requested cancellation") is True
    assert manager.wait_for_completion(job_id, poll_interval=0.05)["status"] == "Cancelled"
    messages = [e["message"] or "" for e in _native(live, f"{job_id}/events")["items"]]
    assert any("User requested cancellation" in text for text in messages)
    assert manager.cancel_job(job_id) is False
    again = manager.call("DELETE", f"/job/{job_id}")
    assert again.status_code == 409 and again.json()["code"] == "INVALID_TRANSITION"
    partial = manager.get_job_results(job_id)
    assert _pick(partial, "status success") == ["Cancelled", False]
    assert partial["results"]["primaryOutput"]["title"] == "partial.csv"

    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    plan = {"executeImmediately": False, "scheduledTime": at.isoformat()}
    waiting = manager.call("POST", "/job", json={"command": "true", "scheduling": plan}).json()
    assert waiting["status"] == "Queued"
    assert waiting["estimatedStartTime"] == f"{at:%Y-%m-%dT%H:%M:%SZ}"
    stopped = manager.call("DELETE", f"/job/{waiting['jobId']}", json={"forceTermination": True})
    assert stopped.status_code == 200 and stopped.json()["status"] == "Cancelled"
    assert manager.call("DELETE", "/job/nope").status_code == 404


def test_list_jobs_filters_pages_and_summary(base: str, live: LiveServer) -> None:
    manager = ExecutionManager(base, "default", "default", live.admin_key)
    before = datetime.now(UTC) - timedelta(seconds=1)
    for priority in ("Low", "Normal", "Critical"):
        body = {"jobType": "Analysis", "priority": priority, "command": "true"}
        assert manager.call("POST", "/job", json=body | {"scheduling": _later()}).status_code == 201
    ended = [
        manager.call("POST", "/job", json={"jobType": "Etl", "command": c}).json()["jobId"]
        for c in ("true", "true", "exit 3")
    ]
    finals = [manager.wait_for_completion(j, poll_interval=0.05) for j in ended]
    assert [f["status"] for f in finals] == ["Completed", "Completed", "Failed"]
    assert _pick(finals[2]["error"], "exitCode type") == [3, "ENTRYPOINT_COMMAND_ERROR"]

    first = manager.list_jobs(page_size=2)
    counts = {
        "totalJobs": 6,
        "runningJobs": 0,
        "queuedJobs": 3,
        "completedJobs": 2,
        "failedJobs": 1,
    }
    assert first["summary"] == counts
    assert _pick(first, "page pageSize hasNextPage") == [1, 2, True]
    assert [j["jobId"] for j in first["jobs"]] == ended[::-1][:2]  # newest first
    done = first["jobs"][1]
    assert _pick(done, "status progress submittedBy jobType") == ["Completed", 100, "tester", "Etl"]
    assert ISO.match(done["endTime"]) and SPOKEN.match(done["duration"])
    third = manager.list_jobs(page=3, page_size=2)
    assert len(third["jobs"]) == 2 and third["hasNextPage"] is False
    assert manager.list_jobs(page=4, page_size=2)["jobs"] == []
    everything = manager.list_jobs()
    assert everything["pageSize"] == 20 and len(everything["jobs"]) == 6

    queued = manager.list_jobs(status="Queued")
    assert [j["status"] for j in queued["jobs"]] == ["Queued"] * 3
    assert queued["summary"] == counts  # the counts ignore the status filter
    assert len(manager.list_jobs(status="completed,failed")["jobs"]) == 3
    assert len(manager.list_jobs(job_type="Etl")["jobs"]) == 3
    assert len(manager.list_jobs(date_from=before)["jobs"]) == 6
    assert manager.list_jobs(date_to=before)["summary"]["totalJobs"] == 0
    for params, found in (({"priority": "Critical"}, 1), ({"submittedBy": "nobody"}, 0)):
        assert len(manager.call("GET", "/jobs", params=params).json()["jobs"]) == found
    for bad in ({"status": "Paused"}, {"priority": "Urgent"}, {"pageSize": 101}, {"page": 0}):
        assert manager.call("GET", "/jobs", params=bad).status_code == 422, bad


def test_wrong_tenant_project_or_other_tenants_job_is_404(base: str, live: LiveServer) -> None:
    key, runtime = live.admin_key, live.services
    mine = ExecutionManager(base, "default", "default", key)
    later = {"command": "true", "scheduling": _later()}
    job_id = mine.call("POST", "/job", json=later).json()["jobId"]
    for tenant, project in (("nope", "default"), ("default", "nope")):
        m = ExecutionManager(base, tenant, project, key)
        answers = [
            m.call("GET", f"/job/{job_id}"),
            m.call("GET", "/jobs"),
            m.call("POST", "/job", json={"command": "true"}),
            m.call("DELETE", f"/job/{job_id}"),
            m.call("GET", f"/job/{job_id}/results"),
            m.call("POST", f"/job/{job_id}/retry", json={}),
        ]
        assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "NOT_FOUND")] * 6
    assert ExecutionManager(base, "nope", "x", key).get_system_status()["code"] == "NOT_FOUND"
    assert httpx.get(f"{mine.prefix}/job/{job_id}").status_code == 401

    runtime.auth.store.ensure_tenant("other", "Other", runtime.clock.now())
    _, other_key = runtime.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    other = ExecutionManager(base, "other", "default", other_key)
    assert other.get_job_status(job_id)["code"] == "NOT_FOUND" and not other.cancel_job(job_id)
    assert other.list_jobs()["summary"]["totalJobs"] == 0
    assert other.get_system_status()["queueStatistics"]["totalQueuedJobs"] == 0
    sneaky = ExecutionManager(base, "default", "default", other_key)
    assert sneaky.get_job_status(job_id)["code"] == "NOT_FOUND"
    assert mine.get_job_status(job_id)["jobId"] == job_id

    p2 = runtime.tenancy.store.create_project("default", "p2", runtime.clock.now())
    in_p2 = ExecutionManager(base, "default", "p2", key)
    second = in_p2.call("POST", "/job", json=later).json()["jobId"]
    assert in_p2.get_job_status(second)["projectId"] == p2["id"]
    assert in_p2.get_job_status(job_id)["code"] == "NOT_FOUND"
    assert mine.get_job_status(second)["code"] == "NOT_FOUND"


def test_submit_fields_model_resource_notifications_and_errors(base: str, live: LiveServer) -> None:
    manager = ExecutionManager(base, "default", "default", live.admin_key)
    notify = {"onCompletion": True, "onFailure": True, "emailRecipients": ["analyst@company.com"]}
    example = {  # the spec's JavaScript example, plus what runs
        "jobName": "Customer Behavior Analysis",
        "jobDescription": "Weekly analysis",
        "jobType": "ProcessMining",
        "priority": "High",
        "resource": {"resourceType": "Pipeline", "resourceId": "770e8400"},
        "parameters": {"datasetId": "880e8400", "includeAnomalyDetection": True},
        "scheduling": {"executeImmediately": True, "timeoutMinutes": 90},
        "notifications": notify,
        "command": "echo analysed",
    }
    created = manager.call("POST", "/job", json=example)
    assert created.status_code == 201, created.text
    native = _native(live, created.json()["jobId"])
    fields = "name description job_type priority entrypoint timeout_s parameters"
    assert _pick(native, fields) == [
        *_pick(example, "jobName jobDescription jobType"),
        "high",
        "echo analysed",
        5400,
        example["parameters"],
    ]
    assert native["metadata"] == {
        "mindzie.resourceType": "Pipeline",
        "mindzie.resourceId": "770e8400",
    }
    assert manager.wait_for_completion(native["id"], poll_interval=0.05)["status"] == "Completed"
    sent = wait_for(lambda: _native(live, f"{native['id']}/notifications")["items"])
    assert [_pick(d, "channel target event") for d in sent] == [
        ["email", "analyst@company.com", "job.succeeded"]
    ]
    once = {"command": "true", "scheduling": _later()}
    headers = manager.headers | {"Idempotency-Key": "k"}
    made = httpx.post(f"{manager.prefix}/job", json=once, headers=headers)
    repeat = httpx.post(f"{manager.prefix}/job", json=once, headers=headers)
    assert (made.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["jobId"] == made.json()["jobId"]

    with live.client() as client:
        client.create_model("scorer")
        version = client.push_version("scorer", "1.0.0", kind="command", entrypoint="echo scored")
    for resource_type in ("Model", "Pipeline"):  # a Model resource, or an id like name:version
        job = manager.submit_job("Scoring", "Analysis", resource_type, "scorer:1.0.0")
        assert (
            manager.wait_for_completion(job["jobId"], poll_interval=0.05)["status"] == "Completed"
        )
        assert _native(live, job["jobId"])["model_version_id"] == version.id

    for field, body in (
        ("command", {"resource": {"resourceType": "Pipeline", "resourceId": "p-1"}}),
        ("command", {"command": ""}),
        ("priority", {"command": "true", "priority": "Urgent"}),
        (
            "scheduling.scheduledTime",
            {"command": "true", "scheduling": {"executeImmediately": False}},
        ),
        (
            "notifications.emailRecipients[0]",
            {"command": "true", "notifications": {"emailRecipients": ["x"]}},
        ),
        ("resource.resourceId", {"resource": {"resourceType": "Model", "resourceId": "missing:1"}}),
    ):
        answer = manager.call("POST", "/job", json=body)
        assert (answer.status_code, answer.json()["details"].get("field")) == (422, field), (
            answer.text
        )
    contradiction = {"modifyParameters": False, "updatedParameters": {"a": 1}}
    retry = manager.call("POST", f"/job/{native['id']}/retry", json=contradiction)
    assert retry.status_code == 422 and retry.json()["details"]["field"] == "updatedParameters"


def test_job_list_holds_only_the_paths_project(base: str, live: LiveServer) -> None:
    """A tenant-wide key lists, under a project's path, that project's jobs only."""
    key, runtime = live.admin_key, live.services
    runtime.tenancy.store.create_project("default", "p2", runtime.clock.now())
    mine = ExecutionManager(base, "default", "default", key)
    in_p2 = ExecutionManager(base, "default", "p2", key)
    later = {"command": "true", "scheduling": _later()}
    first = mine.call("POST", "/job", json=later).json()["jobId"]
    second = in_p2.call("POST", "/job", json=later).json()["jobId"]
    for m, job_id in ((mine, first), (in_p2, second)):
        for status in (None, "Queued"):
            listed = m.list_jobs(status=status)
            assert [j["jobId"] for j in listed["jobs"]] == [job_id], (m.project_id, status)
            assert listed["summary"]["totalJobs"] == 1
            assert listed["summary"]["queuedJobs"] == 1
            assert listed["hasNextPage"] is False
