"""Results of plain command jobs: files in output/ recorded when the job ends."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile

import httpx

from jobyard import Client
from tests.conftest import LiveServer, wait_for

PY = sys.executable


def _get(live: LiveServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(
        live.url + path,
        params=params,
        headers={"Authorization": f"Bearer {live.admin_key}"},
        timeout=10,
    )


def test_results_list_files_with_counts_and_downloads(live: LiveServer, client: Client) -> None:
    script = (
        "mkdir -p output/plots; printf 'a,b\\n1,2\\n3,4\\n' > output/scores.csv;"
        " printf '{}\\n{}\\n' > output/rows.jsonl; echo '<h1>r</h1>' > output/report.html;"
        " echo png > output/plots/p.png; ln -s /etc/hostname output/leak"
    )
    job = client.submit(script)
    assert client.wait(job.id, timeout=20).status == "succeeded"
    detailed = _get(live, f"/v1/jobs/{job.id}/results", format="detailed").json()
    assert detailed["success"] is True and detailed["partial"] is False
    by_path = {a["path"]: a for a in detailed["artifacts"]}
    assert set(by_path) == {"scores.csv", "rows.jsonl", "report.html", "plots/p.png"}  # no symlink
    assert by_path["scores.csv"]["record_count"] == 2
    assert by_path["scores.csv"]["type"] == "data" and by_path["scores.csv"]["format"] == "csv"
    assert by_path["rows.jsonl"]["record_count"] == 2
    assert by_path["report.html"]["type"] == "report"
    assert by_path["plots/p.png"]["type"] == "visualization"
    assert detailed["primary_output"]["path"] == "report.html"
    assert detailed["summary"]["outputs_generated"] == 4
    assert detailed["summary"]["records_processed"] == 4
    assert detailed["execution_metrics"]["duration_ms"] is not None
    body = httpx.get(
        by_path["scores.csv"]["download_url"], headers={"Authorization": f"Bearer {live.admin_key}"}
    )
    assert body.content == b"a,b\n1,2\n3,4\n"
    assert by_path["scores.csv"]["sha256"] == hashlib.sha256(body.content).hexdigest()
    summary = _get(live, f"/v1/jobs/{job.id}/results").json()
    assert summary["artifacts"] is None and summary["primary_output"]["path"] == "report.html"
    only_data = _get(
        live, f"/v1/jobs/{job.id}/results", format="detailed", output_type="data"
    ).json()
    assert {a["path"] for a in only_data["artifacts"]} == {"scores.csv", "rows.jsonl"}
    z = _get(live, f"/v1/jobs/{job.id}/results", format="download")
    assert z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert sorted(names) == sorted(by_path)
    # the results outlive the working directory
    assert _get(live, f"/v1/jobs/{job.id}/results/files/..%2Fetc").status_code in (404, 422)
    assert _get(live, f"/v1/jobs/{job.id}/results/files/nope.txt").status_code == 404


def test_cancelled_job_keeps_partial_outputs(live: LiveServer, client: Client) -> None:
    code = "import time\nopen('output/partial.txt','w').write('half')\nprint('ready', flush=True)\ntime.sleep(60)"
    job = client.submit([PY, "-c", code])
    wait_for(lambda: "ready" in client.logs(job.id))
    client.cancel(job.id)
    done = client.wait(job.id, timeout=20)
    assert done.status == "cancelled"
    res = _get(live, f"/v1/jobs/{job.id}/results", format="detailed").json()
    assert res["partial"] is True and res["success"] is False
    assert [a["path"] for a in res["artifacts"]] == ["partial.txt"]


def test_results_of_unknown_or_running_job(live: LiveServer, client: Client) -> None:
    assert _get(live, "/v1/jobs/nope/results").status_code == 404
    job = client.submit([PY, "-c", "import time; time.sleep(30)"])
    wait_for(lambda: client.get(job.id).status == "running")
    assert _get(live, f"/v1/jobs/{job.id}/results", format="download").status_code == 409
    assert _get(live, f"/v1/jobs/{job.id}/results").json()["artifacts"] is None
    client.cancel(job.id, force=True)
