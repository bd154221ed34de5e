"""The Insights Hub Job Manager v3 samples, replayed over HTTP the way the spec calls
the API (same paths and fields), on both databases. Setup uses the jobyard SDK."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard import Client
from tests.conftest import GATES, LiveServer, wait_for

pytestmark = pytest.mark.compat

FIXTURES = Path(__file__).parent.parent / "fixtures"
JOBS = "/api/jobmanager/v3/jobs"
CREATION_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOB_FIELDS = (
    "modelId",
    "environmentId",
    "message",
    "status",
    "creationDate",
    "createdBy",
    "inputFolderId",
    "outputFolderId",
    "configurationId",
)


@pytest.fixture
def hub(live: LiveServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {live.admin_key}", "X-XSRF-TOKEN": "xsrf-token"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as http:
        yield http


def _start(hub: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = hub.post(JOBS, json=body)
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    return job


def _job(hub: httpx.Client, job_id: str) -> dict[str, Any]:
    resp = hub.get(f"{JOBS}/{job_id}")
    assert resp.status_code == 200, resp.text
    job: dict[str, Any] = resp.json()
    return job


def _until(hub: httpx.Client, job_id: str, *statuses: str, timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = _job(hub, job_id)
        return job if job["status"] in statuses else None

    found: dict[str, Any] = wait_for(reached, timeout=timeout)
    return found


def _setup(client: Client, model: str, artifact: Path, **env: Any) -> dict[str, str]:
    client.create_model(model)
    version = client.push_version(model, "1.0.0", artifact)
    cfg = client.create_environment("cfg", max_concurrent_jobs=1, **env)
    inputs = client.create_folder("in")
    outputs = client.create_folder("out")
    return {
        "version": version.id,
        "configurationId": cfg.id,
        "inputFolderId": inputs.id,
        "outputFolderId": outputs.id,
    }


def test_notebook_sample_runs_and_lists_in_spring_pages(client: Client, hub: httpx.Client) -> None:
    ids = _setup(client, "scores", FIXTURES / "notebooks" / "params.ipynb")
    sample = {k: ids[k] for k in ("configurationId", "inputFolderId", "outputFolderId")}
    started = _start(hub, modelId=ids["version"], maximumExecutionTimeInSeconds=600, **sample)
    assert set(JOB_FIELDS) <= set(started) and "id" in started
    assert started["status"] == "SUBMITTED"
    assert started["modelId"] == ids["version"]
    assert started["environmentId"] == started["configurationId"] == ids["configurationId"]
    assert started["createdBy"] == "default"
    assert CREATION_DATE.match(started["creationDate"])
    assert started["maximumExecutionTimeInSeconds"] == 600
    done = _until(hub, started["id"], "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED", done["message"]
    assert {k: done[k] for k in sample} == sample
    assert "scores.csv" in [f.path for f in client.folder_files("out")]

    client.create_model("note")
    client.push_version("note", "1", FIXTURES / "notes" / "ok.zpln")
    note = _start(hub, modelId="note:1", configurationId="cfg", outputFolderId="out")
    assert note["modelId"] == "note:1" and note["configurationId"] == "cfg"
    assert note["environmentId"] == ids["configurationId"]
    assert _until(hub, note["id"], "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    assert "shell.txt" in [f.path for f in client.folder_files("out")]

    first = hub.get(JOBS, params={"pageNumber": 0, "pageSize": 1}).json()
    assert [j["jobId"] for j in first["content"]] == [note["id"]]
    assert set(JOB_FIELDS) <= set(first["content"][0])
    assert {k: v for k, v in first.items() if k != "content"} == {
        "totalPages": 2,
        "totalElements": 2,
        "last": False,
        "size": 1,
        "number": 0,
        "numberOfElements": 1,
        "first": True,
        "sort": None,
    }
    second = hub.get(JOBS, params={"pageNumber": 1, "pageSize": 1}).json()
    assert [j["jobId"] for j in second["content"]] == [started["id"]]
    assert second["last"] is True and second["first"] is False
    everything = hub.get(JOBS).json()
    assert everything["size"] == 100 and everything["numberOfElements"] == 2
    assert [j["status"] for j in everything["content"]] == ["SUCCEEDED", "SUCCEEDED"]
    beyond = hub.get(JOBS, params={"pageNumber": 5, "pageSize": 1}).json()
    assert beyond["content"] == [] and beyond["last"] is True and beyond["totalElements"] == 2


def test_failing_zeppelin_paragraph_fails_the_job_with_its_message(
    client: Client, hub: httpx.Client
) -> None:
    ids = _setup(client, "note", FIXTURES / "notes" / "failing_sh.zpln")
    job = _start(hub, modelId="note", configurationId="cfg", outputFolderId="out")
    done = _until(hub, job["id"], "SUCCEEDED", "FAILED")
    assert done["status"] == "FAILED"
    assert 'paragraph 2 ("export")' in done["message"]
    assert done["outputFolderId"] == "out" and done["environmentId"] == ids["configurationId"]
    listed = hub.get(JOBS).json()["content"]
    assert [(j["jobId"], j["status"], j["message"]) for j in listed] == [
        (job["id"], "FAILED", done["message"])
    ]


def test_stop_keeps_outputs_written_so_far(client: Client, hub: httpx.Client) -> None:
    ids = _setup(client, "slow", FIXTURES / "notebooks" / "slow.ipynb")
    job = _start(hub, modelId="slow:1.0.0", configurationId="cfg", outputFolderId="out")
    _until(hub, job["id"], "RUNNING")
    wait_for(  # the first cell has written its file
        lambda: any(
            e.kind == "cell" and e.data.get("index") == 1 and e.data.get("status") == "started"
            for e in client.events(job["id"])
        ),
        timeout=60,
    )
    resp = hub.post(f"{JOBS}/{job['id']}/stop")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "STOPPING"
    assert resp.json()["outputFolderId"] == "out"
    stopped = _until(hub, job["id"], "STOPPED", timeout=30)
    assert stopped["environmentId"] == ids["configurationId"]
    assert "partial.txt" in [f.path for f in client.folder_files("out")]
    again = hub.post(f"{JOBS}/{job['id']}/stop")
    assert again.status_code == 409


def test_second_job_on_a_busy_configuration_waits_pending(
    client: Client, hub: httpx.Client, tmp_path: Path
) -> None:
    barrier = tmp_path / GATES / "go"
    script = tmp_path / "gate.py"
    script.write_text(
        "import os, time\nwhile not os.path.exists(os.environ['BARRIER']):\n    time.sleep(0.02)\n"
    )
    ids = _setup(client, "gate", script, env_vars={"BARRIER": str(barrier)})
    body = {"modelId": "gate", "configurationId": ids["configurationId"]}
    first = _start(hub, **body)
    _until(hub, first["id"], "RUNNING")
    second = _start(hub, **body)
    # a waiting job says why it waits: the native pending reason
    why = "concurrency_limit: environment configuration 'cfg' already runs 1 of its 1"
    assert second["status"] == "PENDING" and second["message"].startswith(why)
    assert _job(hub, second["id"])["status"] == "PENDING"
    assert _job(hub, second["id"])["message"].startswith(why)
    listed = {j["jobId"]: j["status"] for j in hub.get(JOBS).json()["content"]}
    assert listed == {first["id"]: "RUNNING", second["id"]: "PENDING"}
    assert hub.get(JOBS).json()["content"][0]["message"].startswith(why)
    barrier.touch()
    assert _until(hub, first["id"], "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    assert _until(hub, second["id"], "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"
    one, two = client.get(first["id"]), client.get(second["id"])
    assert one.ended_at is not None and two.started_at is not None
    assert two.started_at >= one.ended_at


def test_errors_name_the_spec_fields(client: Client, hub: httpx.Client, live: LiveServer) -> None:
    ids = _setup(client, "scores", FIXTURES / "notebooks" / "params.ipynb")
    missing = hub.post(JOBS, json={"modelId": ids["version"], "outputFolderId": "nowhere"})
    assert missing.status_code == 422
    assert missing.json()["message"].startswith("outputFolderId: ")
    assert "nowhere" in missing.json()["message"]
    assert "does not exist" in missing.json()["message"]
    unknown_model = hub.post(JOBS, json={"modelId": "nosuch", "configurationId": "cfg"})
    assert unknown_model.status_code == 422
    assert unknown_model.json()["message"].startswith("modelId: ")
    unknown_cfg = hub.post(JOBS, json={"modelId": "scores", "configurationId": "nosuch"})
    assert unknown_cfg.status_code == 422
    assert unknown_cfg.json()["message"].startswith("configurationId: ")
    assert hub.post(JOBS, json={"configurationId": "cfg"}).status_code == 422
    too_short = hub.post(JOBS, json={"modelId": "scores", "maximumExecutionTimeInSeconds": 0})
    assert too_short.status_code == 422
    assert hub.get(JOBS).json()["totalElements"] == 0
    assert hub.get(f"{JOBS}/no-such-job").status_code == 404
    assert hub.post(f"{JOBS}/no-such-job/stop").status_code == 404
    assert httpx.get(f"{live.url}{JOBS}").status_code == 401


def test_a_new_job_says_it_was_queued(client: Client, hub: httpx.Client) -> None:
    """The message docs/reference/compat-insights-hub.md promises for a job that waits for nothing."""
    client.create_model("m")
    client.push_version("m", "1", entrypoint="true")
    started = _start(hub, modelId="m:1")
    assert (started["status"], started["message"]) == ("SUBMITTED", "Job submitted and queued.")
    done = _until(hub, started["id"], "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED" and done["message"] == "Job finished successfully."


def test_page_parameters_out_of_range_are_read_as_spring_reads_them(
    client: Client, hub: httpx.Client
) -> None:
    """Spring Data clamps page parameters instead of refusing them: a negative or
    unreadable page is 0, a size below 1 or unreadable is 100, one over 2000 is 2000."""
    client.create_model("m")
    client.push_version("m", "1", entrypoint="true")
    ids = [_start(hub, modelId="m:1")["id"] for _ in range(2)]
    cases: list[tuple[dict[str, int | str], int, int]] = [
        ({"pageNumber": -1, "pageSize": 5000}, 0, 2000),
        ({"pageNumber": -7}, 0, 100),
        ({"pageSize": 0}, 0, 100),
        ({"pageSize": -3}, 0, 100),
        ({"pageNumber": "first", "pageSize": "many"}, 0, 100),
        ({"pageNumber": 99_999_999_999, "pageSize": 1}, 0, 1),  # over Java's int: 0
        ({"pageNumber": "9" * 4400, "pageSize": "0" * 4400 + "1"}, 0, 1),  # > int digits
        ({"pageNumber": 1, "pageSize": 1}, 1, 1),
    ]
    for params, number, size in cases:
        resp = hub.get(JOBS, params=params)
        assert resp.status_code == 200, (params, resp.text)
        page = resp.json()
        assert (page["number"], page["size"], page["totalElements"]) == (number, size, 2), params
        expected = ids[::-1][number * size : (number + 1) * size]
        assert [j["jobId"] for j in page["content"]] == expected, params
