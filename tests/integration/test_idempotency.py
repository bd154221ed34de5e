"""Idempotent submits over real HTTP on both databases: a request sent again under its
``Idempotency-Key`` (or ``submission_id``) answers the first job, whatever it names
(environment, folders, batch inputs, a model); another body under the same key is a
409 ``IDEMPOTENCY_KEY_REUSED``, for single submits and for batches alike. Rows stored
with the earlier hash format still answer their retries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from jobyard.service import jobs as jobs_service
from jobyard.store.tables import jobs
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

Serve = Callable[[Services], LiveServer]


@pytest.fixture
def live_idle(make_services: ServicesFactory, serve: Serve, tmp_path: Path) -> LiveServer:
    """A server without a dispatcher (jobs stay queued), with an environment, two
    folders (one file in the input folder) and a model to name."""
    live = serve(make_services(start=False))
    with live.client() as c:
        c.create_environment("env1", env_vars={"REGION": "eu"})
        c.create_folder("in1")
        c.create_folder("out1")
        (tmp_path / "a.csv").write_text("x\n")
        c.upload("in1", tmp_path / "a.csv")
        c.create_model("scorer")
        script = tmp_path / "score.py"
        script.write_text("print('scored')\n")
        c.push_version("scorer", "1.0", script, default_parameters={"threshold": 0.5})
    return live


def _post(live: LiveServer, path: str, body: object, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{live.url}{path}", json=body, headers=headers, timeout=30)


BODIES: dict[str, dict[str, Any]] = {
    "environment": {"entrypoint": "true", "environment": "env1"},
    "folders": {"entrypoint": "true", "input_folder": "in1", "output_folder": "out1"},
    "inputs": {"entrypoint": "true", "inputs": [{"n": 1}, {"n": 2}]},
    "inputs_from_folder": {"entrypoint": "true", "input_folder": "in1", "inputs_from_folder": True},
    "model": {"model": "scorer:1.0", "parameters": {"threshold": 0.2}},
    "model_default_environment": {"model": "scorer", "environment": "env1"},
}


def _changed(body: dict[str, Any]) -> dict[str, Any]:
    if "model" in body:
        return {**body, "parameters": {"threshold": 0.9}}
    return {**body, "entrypoint": "false"}


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_retry_answers_the_first_job_and_another_body_is_409(
    live_idle: LiveServer, kind: str
) -> None:
    body = BODIES[kind]
    first = _post(live_idle, "/v1/jobs", body, key=f"k-{kind}")
    assert first.status_code == 201, first.text
    again = _post(live_idle, "/v1/jobs", body, key=f"k-{kind}")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = _post(live_idle, "/v1/jobs", _changed(body), key=f"k-{kind}")
    assert other.status_code == 409, other.text
    error = other.json()
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert f"k-{kind}" in error["message"] and first.json()["id"] in error["message"]
    assert error["details"]["job_id"] == first.json()["id"]
    with live_idle.client() as c:
        assert c.list(limit=10).summary.total == 1


def test_the_key_in_the_body_is_the_same_key(live_idle: LiveServer) -> None:
    body = {**BODIES["environment"], "submission_id": "sid-1"}
    first = _post(live_idle, "/v1/jobs", body)
    assert first.status_code == 201, first.text
    again = _post(live_idle, "/v1/jobs", BODIES["environment"], key="sid-1")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


def test_a_batch_answers_its_first_jobs_and_refuses_changed_ones(live_idle: LiveServer) -> None:
    keyed = [{**BODIES[k], "submission_id": f"b-{k}"} for k in sorted(BODIES)]
    first = _post(live_idle, "/v1/jobs/batch", {"jobs": keyed})
    assert first.status_code == 200, first.text
    assert [i["status_code"] for i in first.json()["items"]] == [201] * len(keyed)
    again = _post(live_idle, "/v1/jobs/batch", {"jobs": keyed})
    assert [i["status_code"] for i in again.json()["items"]] == [200] * len(keyed), again.text
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in first.json()["items"]]
    changed = _post(live_idle, "/v1/jobs/batch", {"jobs": [_changed(b) for b in keyed]})
    items = changed.json()["items"]
    assert [i["status_code"] for i in items] == [409] * len(keyed), changed.text
    assert {i["error"]["code"] for i in items} == {"IDEMPOTENCY_KEY_REUSED"}
    # a single submit and a batch item share the key space and the comparison
    single = _post(live_idle, "/v1/jobs", BODIES["model"], key="b-model")
    assert single.status_code == 200, single.text
    assert single.json()["id"] == first.json()["items"][sorted(BODIES).index("model")]["id"]


def test_a_row_stored_with_the_earlier_hash_format_still_answers_its_retry(
    live_idle: LiveServer,
) -> None:
    """Rows accepted before the hash of the request as sent hold the hash of the
    resolved spec: a retry is compared with that (the request is resolved again)."""
    body = {**BODIES["folders"], "environment": "env1", "inputs": [1, 2]}
    first = _post(live_idle, "/v1/jobs", body, key="old-1")
    assert first.status_code == 201, first.text
    services = live_idle.services
    job = services.jobs.store.get_unscoped(first.json()["id"])
    assert job is not None
    legacy = jobs_service.legacy_request_hash(job.spec)
    assert len(legacy) == 64 and legacy != job.request_hash
    with services.db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job.id).values(request_hash=legacy))
    again = _post(live_idle, "/v1/jobs", body, key="old-1")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job.id
    other = _post(live_idle, "/v1/jobs", _changed(body), key="old-1")
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    with services.db.read() as conn:
        stored = conn.execute(sa.select(jobs.c.request_hash).where(jobs.c.id == job.id)).scalar()
    assert stored == legacy  # the row is left as it was
