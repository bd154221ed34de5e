"""Live tracking from inside jobs, batch items, job tokens, resource samples, queue
insight and retries, through HTTP on both databases."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard import Client
from jobyard.clock import ManualClock
from jobyard.dispatch import supervisor
from jobyard.sdk import errors as sdk_errors
from tests.conftest import GATES, LiveServer, ServicesFactory, wait_for

PY = sys.executable


def _job(live: LiveServer, job_id: str) -> dict[str, Any]:
    r = httpx.get(
        f"{live.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {live.admin_key}"}
    )
    assert r.status_code == 200, r.text
    data: dict = r.json()  # type: ignore[type-arg]
    return data


def _queued_again(live: LiveServer, job_id: str, attempt: int) -> dict[str, Any] | None:
    """The job once its ``attempt`` has failed and it is queued for the next (else None)."""
    job = _job(live, job_id)
    return job if job["attempt"] == attempt and job["status"] == "queued" else None


HELPER_JOB = """
import os, sys, time
from jobyard import runtime
runtime.progress(10, "load")
runtime.metrics(records_processed=10, total_records=100)
runtime.warn("timestamps inferred", type="DataQuality")
runtime.warn("timestamps inferred again", type="DataQuality")
runtime.warn("slow disk")
print("phase1", flush=True)
while not os.path.exists(sys.argv[1]): time.sleep(0.02)
runtime.progress(60, "score")
runtime.metrics(records_processed=60, errors=2)
print("phase2", flush=True)
while not os.path.exists(sys.argv[2]): time.sleep(0.02)
"""


def test_progress_metrics_and_warnings_from_the_helper(
    live: LiveServer, client: Client, tmp_path: Path
) -> None:
    a, b = tmp_path / GATES / "a", tmp_path / GATES / "b"
    # the machine's plain python3, without jobyard's dependencies: the helper is stdlib only
    job = client.submit(["python3", "-c", HELPER_JOB, str(a), str(b)])
    wait_for(lambda: "phase1" in client.logs(job.id), timeout=30)
    first = _job(live, job.id)
    assert first["progress"]["percent"] == 10 and first["progress"]["stage"] == "load"
    assert first["progress"]["estimated_completion"] is not None
    assert first["metrics"]["records_processed"] == 10 and first["metrics"]["total_records"] == 100
    assert first["metrics"]["processing_rate"] > 0
    assert first["metrics"]["warning_count"] == 3
    assert {w["type"]: w["count"] for w in first["warnings"]} == {"DataQuality": 2, "general": 1}
    a.touch()
    wait_for(lambda: "phase2" in client.logs(job.id), timeout=30)
    second = _job(live, job.id)
    assert second["progress"]["percent"] == 60 and second["progress"]["stage"] == "score"
    assert second["progress"]["estimated_completion"] != first["progress"]["estimated_completion"]
    assert second["metrics"]["error_count"] == 2
    b.touch()
    assert client.wait(job.id, timeout=30).status == "succeeded"
    assert "::jobyard::" not in client.logs(job.id)  # reported over HTTP, not as markers
    kinds = [e.kind for e in client.events(job.id)]
    assert kinds.count("progress") >= 4 and kinds.count("warning") == 3


def test_stdout_markers_from_a_shell_script(live: LiveServer, client: Client) -> None:
    script = (
        'echo \'::jobyard::{"type":"progress","percent":50,"stage":"shell"}\';'
        'echo \'::jobyard::{"type":"metrics","records_processed":7}\';'
        'echo \'::jobyard::{"type":"warning","category":"Input","message":"odd row"}\';'
        'echo \'::jobyard::{"type":"item","index":0,"ok":true}\';'
        'echo \'::jobyard::{"type":"item","index":1,"ok":false,"error":"bad"}\';'
        "echo '::jobyard::{not json'; echo done"
    )
    job = client.submit(script, inputs=[{"n": 1}, {"n": 2}, {"n": 3}])
    assert client.wait(job.id, timeout=30).status == "succeeded"
    data = _job(live, job.id)
    assert data["progress"]["percent"] == 100  # succeeded
    assert data["progress"]["stage"] == "shell"
    assert data["metrics"]["records_processed"] == 7
    assert data["warnings"] == [{"type": "Input", "count": 1, "message": "odd row"}]
    assert data["items"] == {"total": 3, "pending": 1, "completed": 1, "failed": 1}
    assert data["input_bytes"] == len(b'{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    assert "::jobyard::{not json" in client.logs(job.id)


def test_a_young_attempt_is_scanned_at_its_first_look_or_its_exit(
    live: LiveServer, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the supervisor's first look at an attempt comes FIRST_LOOK_S after its start: a
    # stream of short jobs costs no ticks, and the exit's scan applies their markers
    monkeypatch.setattr(supervisor, "FIRST_LOOK_S", 3600.0, raising=False)
    gate = tmp_path / GATES / "go"
    script = (
        'echo \'::jobyard::{"type":"progress","percent":50,"stage":"young"}\'; echo printed;'
        f"while [ ! -e {gate} ]; do sleep 0.02; done"
    )
    job = client.submit(script)
    wait_for(lambda: "printed" in client.logs(job.id), timeout=30)
    jobs = live.services.jobs.store

    def lease() -> datetime:
        found = jobs.get_unscoped(job.id)
        assert found is not None and found.lease_expires_at is not None
        return found.lease_expires_at

    before = lease()
    wait_for(lambda: lease() > before, timeout=30)  # a heartbeat round since the marker
    assert (_job(live, job.id)["progress"] or {}).get("stage") != "young"  # not scanned
    gate.touch()
    assert client.wait(job.id, timeout=30).status == "succeeded"
    assert _job(live, job.id)["progress"]["stage"] == "young"  # the exit's scan


def test_items_from_inputs_jsonl_and_the_helper(live: LiveServer, client: Client) -> None:
    code = (
        "import json\nfrom jobyard import runtime\n"
        "for i, line in enumerate(open('inputs.jsonl')):\n"
        "    item = json.loads(line)\n"
        "    runtime.item_done(i, ok=item['ok'], error=None if item['ok'] else 'nope')\n"
    )
    job = client.submit(
        [PY, "-c", code], inputs=[{"ok": True}, {"ok": False}, {"ok": True}, {"ok": True}]
    )
    assert client.wait(job.id, timeout=30).status == "succeeded"
    assert _job(live, job.id)["items"] == {"total": 4, "pending": 0, "completed": 3, "failed": 1}


def test_job_token_can_only_report_on_its_running_job(
    live: LiveServer, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / GATES / "gate"
    code = f"import os,time\nprint(os.environ['JOBYARD_JOB_TOKEN'], flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    job = client.submit([PY, "-c", code])
    other = client.submit("true")
    token = wait_for(lambda: client.logs(job.id).strip(), timeout=30)
    assert token.startswith("jyt_")
    h = {"Authorization": f"Bearer {token}"}
    report = {"type": "progress", "percent": 5}
    assert (
        httpx.post(f"{live.url}/v1/jobs/{job.id}/report", json=report, headers=h).status_code == 202
    )
    assert httpx.get(f"{live.url}/v1/jobs", headers=h).status_code == 403
    assert httpx.get(f"{live.url}/v1/jobs/{job.id}", headers=h).status_code == 403
    assert (
        httpx.post(f"{live.url}/v1/jobs/{other.id}/report", json=report, headers=h).status_code
        == 403
    )
    bad = httpx.post(
        f"{live.url}/v1/jobs/{job.id}/report", json={"type": "progress", "percent": 500}, headers=h
    )
    assert bad.status_code == 422 and "percent" in bad.json()["message"]
    gate.touch()
    assert client.wait(job.id, timeout=30).status == "succeeded"
    late = httpx.post(f"{live.url}/v1/jobs/{job.id}/report", json=report, headers=h)
    assert late.status_code == 401 and "ended" in late.json()["message"]
    forged = token[:-4] + "abcd"
    assert (
        httpx.post(
            f"{live.url}/v1/jobs/{job.id}/report",
            json=report,
            headers={"Authorization": f"Bearer {forged}"},
        ).status_code
        == 401
    )


def test_resource_samples_and_totals(live: LiveServer, client: Client) -> None:
    # runs 2 s: the samples (every 0.2 s after the first 0.5 s) see it also on a busy machine
    code = "import time\nopen('output/out.bin','wb').write(b'x'*200000)\nt=time.time()\nwhile time.time()-t<2.0: pass"
    job = client.submit([PY, "-c", code])
    assert client.wait(job.id, timeout=30).status == "succeeded"
    r = httpx.get(
        f"{live.url}/v1/jobs/{job.id}/metrics",
        headers={"Authorization": f"Bearer {live.admin_key}"},
    )
    data = r.json()
    assert data["totals"]["disk_bytes"] == 200000
    assert data["totals"]["peak_rss_bytes"] > 0 and data["totals"]["io_write_ops"] >= 1
    assert len(data["samples"]) >= 1 and data["samples"][0]["rss_bytes"] > 0


def test_queue_position_estimates_and_reason(
    make_services: ServicesFactory, serve, tmp_path: Path
) -> None:
    live = serve(make_services(slots=1))
    with live.client() as client:
        for _ in range(2):
            done = client.submit([PY, "-c", "pass"], job_type="etl")
            assert client.wait(done.id, timeout=30).status == "succeeded"
        gate = tmp_path / GATES / "gate"
        blocker = client.submit(
            [PY, "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
        )
        wait_for(lambda: client.get(blocker.id).status == "running")
        first = client.submit([PY, "-c", "pass"], job_type="etl")
        second = client.submit([PY, "-c", "pass"], job_type="etl", priority="low")
        fresh = client.submit([PY, "-c", "pass"], job_type="never-ran")
        assert first.queue_position is None  # only when asked
        assert _job(live, first.id)["queue_position"] == 1
        assert _job(live, first.id)["estimated_start"] is not None
        asked = httpx.post(
            f"{live.url}/v1/jobs?insight=true",
            json={"entrypoint": [PY, "-c", "pass"], "job_type": "etl", "priority": "low"},
            headers={"Authorization": f"Bearer {live.admin_key}"},
        ).json()
        assert asked["queue_position"] == 4 and asked["pending_reason"].startswith("capacity")
        info = _job(live, second.id)
        assert info["queue_position"] == 3  # behind first and the normal-priority fresh job
        assert info["estimated_duration"]["basis"] == "job_type"
        assert info["estimated_duration"]["samples"] == 2
        assert info["estimated_duration"]["p90_s"] >= info["estimated_duration"]["median_s"]
        assert info["pending_reason"].startswith("capacity")
        assert "no finished job" in _job(live, fresh.id)["estimate_note"]
        gate.touch()
        for j in (blocker, first, second, fresh, client.get(asked["id"])):
            assert client.wait(j.id, timeout=30).status == "succeeded"
        assert _job(live, first.id)["queue_time_ms"] > 0


def test_automatic_retries_with_backoff_under_a_controlled_clock(
    make_services: ServicesFactory,
    serve,
) -> None:
    clock = ManualClock()
    live = serve(make_services(clock=clock, lease_ttl_s=3600.0, reap_interval_s=3600.0))
    with live.client() as client:
        job = client.submit(
            [
                PY,
                "-c",
                "import os,sys; print('attempt', os.environ['JOBYARD_ATTEMPT']); sys.exit(3)",
            ],
            max_attempts=3,
            retry_on=["failed"],
            retry_backoff_s=10,
        )
        for attempt, backoff in ((1, 10), (2, 20)):
            state = wait_for(partial(_queued_again, live, job.id, attempt), timeout=30)
            assert "retrying in" in state["message"]
            clock.advance(backoff * 0.75)  # jitter is at most 20 %: not yet
            live.services.dispatcher.job_queued()
            assert _job(live, job.id)["status"] == "queued"
            clock.advance(backoff * 0.5)
            live.services.dispatcher.job_queued()
        final = client.wait(job.id, timeout=30)
        assert final.status == "failed" and final.attempt == 3 and final.exit_code == 3
        attempts = httpx.get(
            f"{live.url}/v1/jobs/{job.id}/attempts",
            headers={"Authorization": f"Bearer {live.admin_key}"},
        ).json()["items"]
        assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [
            (1, "failed", 3),
            (2, "failed", 3),
            (3, "failed", 3),
        ]
        for a in attempts:
            log = httpx.get(
                a["log_url"], headers={"Authorization": f"Bearer {live.admin_key}"}
            ).text
            assert log.strip() == f"attempt {a['attempt']}"
        states = [e.to_state for e in client.events(job.id) if e.kind == "state"]
        assert states.count("failed") == 3 and states.count("queued") == 3


def test_timeouts_are_not_retried_unless_asked(client: Client) -> None:
    job = client.submit(
        [PY, "-c", "import time; time.sleep(30)"],
        timeout_s=0.3,
        max_attempts=2,
        retry_on=["failed"],
    )
    done = client.wait(job.id, timeout=30)
    assert done.status == "timed_out" and done.attempt == 1


def test_manual_retry_with_changed_parameters(
    live: LiveServer, client: Client, tmp_path: Path
) -> None:
    code = "import json,sys; p=json.load(open('parameters.json')); print(p); sys.exit(0 if p['x'] > 1 else 1)"
    job = client.submit([PY, "-c", code], parameters={"x": 1, "keep": "yes"})
    assert client.wait(job.id, timeout=30).status == "failed"
    h = {"Authorization": f"Bearer {live.admin_key}"}
    r = httpx.post(
        f"{live.url}/v1/jobs/{job.id}/retry",
        headers=h,
        json={
            "reason": "fixed input",
            "parameters": {"x": 2},
            "priority": "high",
            "immediate": True,
        },
    )
    assert r.status_code == 201, r.text
    retry = r.json()
    assert retry["retry_of"] == job.id and retry["retry_reason"] == "fixed input"
    assert retry["parameters"] == {"x": 2, "keep": "yes"} and retry["priority"] == "high"
    assert client.wait(retry["id"], timeout=30).status == "succeeded"
    assert _job(live, job.id)["retries"] == [retry["id"]]
    gate = tmp_path / GATES / "gate"
    running = client.submit(
        [PY, "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    )
    wait_for(lambda: client.get(running.id).status == "running")
    conflict = httpx.post(f"{live.url}/v1/jobs/{running.id}/retry", headers=h, json={})
    assert conflict.status_code == 409 and "only an ended job" in conflict.json()["message"]
    gate.touch()
    client.wait(running.id, timeout=30)
    with pytest.raises(sdk_errors.NotFound):
        client.get("nope")
    assert json.dumps(retry)
