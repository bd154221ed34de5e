"""The job history API (spec 002) over HTTP on both databases: the job object, status,
model and date filters, pages and tenant isolation. Jobs are submitted with the SDK."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard import Client
from jobyard.domain.auth import Role
from jobyard.wiring import Services
from tests.conftest import GATES, LiveServer, ServicesFactory, wait_for

pytestmark = pytest.mark.compat

PY = sys.executable
JOBS = "/api/history/jobs"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
ITEMS = (
    "import json\n"
    "for i, line in enumerate(open('inputs.jsonl')):\n"
    "    ok = json.loads(line)['ok']\n"
    "    print('::jobyard::' + json.dumps({'type': 'item', 'index': i, 'ok': ok}), flush=True)\n"
    "import os, time\n"
    "while not os.path.exists(os.environ['BARRIER']):\n"
    "    time.sleep(0.02)\n"
)


def _http(live: LiveServer, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key or live.admin_key}"}
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


@pytest.fixture
def hist(live: LiveServer) -> Iterator[httpx.Client]:
    with _http(live) as http:
        yield http


def _list(http: httpx.Client, **params: Any) -> dict[str, Any]:
    resp = http.get(JOBS, params=params)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    return page


def _ids(http: httpx.Client, **params: Any) -> list[str]:
    return [j["jobIdentifier"] for j in _list(http, **params)["items"]]


def _ended(client: Client, job_id: str, status: str = "succeeded") -> None:
    done = client.wait(job_id, timeout=60)
    assert done.status == status, done.message


def test_batch_job_object(client: Client, hist: httpx.Client, tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text(ITEMS)
    client.create_model("scorer")
    version = client.push_version("scorer", "1.0.0", tmp_path / "score.py")
    inputs = [{"ok": True, "image": "a.png"}, {"ok": False}, {"ok": True}]
    barrier = tmp_path / GATES / "go"
    job = client.submit(
        model="scorer:1.0.0",
        inputs=inputs,
        env={"BARRIER": str(barrier)},
        timeout_s=60,
        metadata={"explain": "true", "imageClassificationModel": "no"},
    )

    def counted() -> dict[str, Any] | None:  # the job waits at the barrier once it reported
        found: dict[str, Any] = hist.get(f"{JOBS}/{job.id}").json()
        reported = found["completed"] + found["failed"] == len(inputs)
        # the running mark may follow the process's start by a claim-loop step (≤ 50 ms)
        return found if reported and found["status"] == "RUNNING" else None

    running: dict[str, Any] = wait_for(counted, timeout=30)
    assert (running["status"], running["pending"], running["total"]) == ("RUNNING", 0, 3)
    assert isinstance(running["elapsedTime"], int)
    barrier.touch()
    _ended(client, job.id)
    got = hist.get(f"{JOBS}/{job.id}").json()
    assert {k: got[k] for k in ("jobIdentifier", "submittedBy", "accountIdentifier")} == {
        "jobIdentifier": job.id,
        "submittedBy": "tester",
        "accountIdentifier": "default",
    }
    assert got["model"] == {
        "id": version.id,
        "name": "scorer",
        "version": "1.0.0",
        "kind": "python",
    }
    assert got["status"] == "SUCCEEDED"
    assert all(ISO.match(got[k]) for k in ("createdAt", "updatedAt", "submittedAt"))
    counts = {k: got[k] for k in ("total", "pending", "completed", "failed")}
    assert counts == {"total": 3, "pending": 0, "completed": 2, "failed": 1}
    assert isinstance(got["elapsedTime"], int) and isinstance(got["queueTime"], int)
    assert got["timeout"] == 60_000
    assert got["explain"] is True and got["imageClassificationModel"] is False
    assert got["user"] == {"name": "tester"}
    assert got["jobInputs"] == inputs
    jsonl = "".join(json.dumps(i, sort_keys=True) + "\n" for i in inputs)
    assert got["inputByteAmount"] == len(jsonl.encode())

    plain = client.submit("true")
    _ended(client, plain.id)
    one = hist.get(f"{JOBS}/{plain.id}").json()
    assert (one["model"], one["jobInputs"], one["inputByteAmount"], one["timeout"]) == (
        {},
        [],
        0,
        None,
    )
    assert (one["total"], one["completed"], one["pending"], one["failed"]) == (0, 0, 0, 0)
    listed = _list(hist)["items"]
    assert [j["jobIdentifier"] for j in listed] == [plain.id, job.id]
    assert listed[1]["jobInputs"] == []  # lists carry inputs only on request
    assert _list(hist, includeInputs="true")["items"][1]["jobInputs"] == inputs


def test_timed_out_job_and_status_filters(client: Client, hist: httpx.Client) -> None:
    slow = client.submit([PY, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    ok = client.submit("true")
    _ended(client, slow.id, "timed_out")
    _ended(client, ok.id)
    timed_out = _list(hist, status="timedout")["items"]
    assert [(j["jobIdentifier"], j["status"], j["timeout"]) for j in timed_out] == [
        (slow.id, "TIMEDOUT", 500)
    ]
    assert (timed_out[0]["total"], timed_out[0]["failed"]) == (0, 0)  # it had no items
    assert _ids(hist, status="terminated") == [ok.id]
    assert _ids(hist, status="pending") == []
    assert _ids(hist, status="ALL") == _ids(hist) == [ok.id, slow.id]
    bad = hist.get(JOBS, params={"status": "finished"})
    assert bad.status_code == 422 and "status" in bad.json()["message"]


def test_pending_filter_shows_waiting_and_running_jobs(
    make_services: ServicesFactory, serve: Callable[[Services], LiveServer], tmp_path: Path
) -> None:
    live = serve(make_services(slots=1))
    barrier = tmp_path / GATES / "go"
    gate = f"import os,time\nwhile not os.path.exists({str(barrier)!r}): time.sleep(0.02)"
    with live.client() as client, _http(live) as hist:
        blocker = client.submit([PY, "-c", gate])
        wait_for(lambda: client.get(blocker.id).status == "running")
        queued = client.submit("true")
        pending = {j["jobIdentifier"]: j for j in _list(hist, status="pending")["items"]}
        assert {k: v["status"] for k, v in pending.items()} == {
            blocker.id: "RUNNING",
            queued.id: "PENDING",
        }
        waiting = pending[queued.id]
        assert (waiting["pending"], waiting["completed"], waiting["elapsedTime"]) == (0, 0, 0)
        assert isinstance(waiting["queueTime"], int)
        assert _ids(hist, status="terminated") == []
        barrier.touch()
        _ended(client, blocker.id)
        _ended(client, queued.id)
        assert _ids(hist, status="pending") == []
        assert _ids(hist, status="terminated") == [queued.id, blocker.id]


def test_a_job_that_never_started_answers_the_specs_types(
    client: Client, hist: httpx.Client
) -> None:
    """The spec's types for a job that never ran: ``queueTime`` and ``elapsedTime`` are
    numbers (it waited all its life, it ran 0 ms), ``total`` counts the items submitted
    (none), ``jobInputs`` is an array also in a list, and a waiting job is ``PENDING``."""
    job = client.submit("true", scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    for waiting in (_list(hist)["items"][0], hist.get(f"{JOBS}/{job.id}").json()):
        assert waiting["jobIdentifier"] == job.id and waiting["status"] == "PENDING"
        counts = [waiting[k] for k in ("total", "pending", "completed", "failed")]
        assert counts == [0, 0, 0, 0]
        assert waiting["jobInputs"] == [] and waiting["elapsedTime"] == 0
        assert type(waiting["queueTime"]) is int and waiting["queueTime"] >= 0
    assert _ids(hist, status="pending") == [job.id]
    client.cancel(job.id)
    ended = hist.get(f"{JOBS}/{job.id}").json()
    assert ended["status"] == "CANCELLED" and ended["elapsedTime"] == 0
    assert type(ended["queueTime"]) is int and ended["queueTime"] >= 0
    assert _list(hist)["items"][0]["jobInputs"] == []
    assert _ids(hist, status="terminated") == [job.id]


def test_model_filter_date_range_and_pages(client: Client, hist: httpx.Client) -> None:
    for model, versions in (("alpha", ("1", "2")), ("beta", ("1",))):
        client.create_model(model)
        for v in versions:
            client.push_version(model, v, entrypoint="true")
    submitted = [client.submit(model=m) for m in ("alpha:1", "alpha:2", "beta:1")] + [
        client.submit("true") for _ in range(2)
    ]
    for job in submitted:
        _ended(client, job.id)
    a1, a2, b1, p1, p2 = (j.id for j in submitted)
    alpha = client.model("alpha")
    assert _ids(hist, model="alpha") == [a2, a1]
    assert _ids(hist, model=alpha.id) == [a2, a1]
    assert _ids(hist, model="alpha:2") == [a2]
    assert _ids(hist, model=client.version("beta", "1").id) == [b1]
    assert _list(hist, model="nosuch") == {
        "items": [],
        "page": 1,
        "pageSize": 20,
        "total": 0,
        "hasNextPage": False,
    }
    assert _ids(hist, model="alpha", status="timedout") == []

    start, end = (client.get(j).created_at for j in (a2, p1))
    assert start is not None and end is not None
    window = _ids(hist, createdFrom=start.isoformat(), createdTo=end.isoformat())
    assert window == [p1, b1, a2]
    later = datetime.now(UTC).isoformat()
    assert _ids(hist, createdFrom=later) == []

    pages = [_list(hist, page=n, pageSize=2) for n in (1, 2, 3, 4)]
    assert [p["hasNextPage"] for p in pages] == [True, True, False, False]
    assert {p["total"] for p in pages} == {5}
    assert [j["jobIdentifier"] for p in pages for j in p["items"]] == [p2, p1, b1, a2, a1]
    assert _ids(hist, model="alpha", page=2, pageSize=1) == [a1]
    assert hist.get(JOBS, params={"page": 0}).status_code == 422


def test_other_tenants_jobs_are_never_listed(
    live: LiveServer, client: Client, hist: httpx.Client
) -> None:
    mine = client.submit("true")
    live.services.auth.store.ensure_tenant("other", "Other", datetime.now(UTC))
    _, key = live.services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    with live.client(key) as other_client, _http(live, key) as other:
        theirs = other_client.submit("true")
        _ended(other_client, theirs.id)
        _ended(client, mine.id)
        page = _list(other)
        assert [j["jobIdentifier"] for j in page["items"]] == [theirs.id] and page["total"] == 1
        assert (page["items"][0]["accountIdentifier"], page["items"][0]["submittedBy"]) == (
            "other",
            "o",
        )
        assert other.get(f"{JOBS}/{mine.id}").status_code == 404
        assert _ids(other, status="terminated") == [theirs.id]
    assert _ids(hist) == [mine.id]
    assert hist.get(f"{JOBS}/{theirs.id}").status_code == 404
    assert hist.get(f"{JOBS}/no-such-job").status_code == 404
