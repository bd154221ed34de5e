"""Event streams (SSE) over real HTTP on both databases: a job's states, log and end;
resumption; the tenant-wide stream with filters and isolation; heartbeats; 404s; the
SDK's ``watch``; ``jobyard status --watch``; and the parser and progress display."""

from __future__ import annotations

import io
import itertools
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rich.console import Console
from typer.testing import CliRunner

from jobyard.api.routes import stream as stream_routes
from jobyard.cli import exitcodes, watch
from jobyard.cli.main import app as cli_app
from jobyard.cli.watch import EtaColumn, JobDisplay, make_progress
from jobyard.domain.auth import Principal, Role
from jobyard.sdk.errors import NotFound
from jobyard.sdk.models import Job
from jobyard.sdk.stream import ServerSentEvent, StreamEvent, parse_sse
from tests.conftest import LiveServer, ServicesFactory

PY = sys.executable
STATES = ["queued", "starting", "running", "succeeded"]


def _served(server: LiveServer) -> Iterator[LiveServer]:
    app = server.server.config.app
    assert isinstance(app, FastAPI)
    if not any(getattr(r, "path", None) == "/v1/events/stream" for r in app.routes):
        app.include_router(stream_routes.router)  # until api/app.py includes the router
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live(make_services: ServicesFactory) -> Iterator[LiveServer]:
    """A started services behind a real HTTP server that serves the event streams."""
    yield from _served(LiveServer(make_services()))


@pytest.fixture
def idle(make_services: ServicesFactory) -> Iterator[LiveServer]:
    """The same without a dispatcher: submitted jobs stay queued."""
    yield from _served(LiveServer(make_services(start=False)))


def _raw(
    live: LiveServer, path: str, *, headers: dict[str, str] | None = None, **params: Any
) -> list[ServerSentEvent]:
    """Every message of a stream that ends (a job's)."""
    auth = {"Authorization": f"Bearer {live.admin_key}", **(headers or {})}
    with httpx.stream("GET", live.url + path, params=params, headers=auth, timeout=10) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(resp.iter_lines()))


def _other_tenant(live: LiveServer) -> str:
    live.services.auth.store.ensure_tenant("other", "Other", live.services.clock.now())
    _, key = live.services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    return key


def test_job_stream_sends_states_in_order_the_log_then_end(live: LiveServer) -> None:
    with live.client() as c:
        job = c.submit([PY, "-c", "print('one'); print('héllo ✓', flush=True)"])
        with c.stream_events(job.id) as events:
            got = list(events)
    states = [e for e in got if e.kind == "state"]
    assert [e.to_state for e in states] == STATES
    assert [e.data["from_state"] for e in states] == [None, *STATES[:-1]]
    seqs = [e.data["seq"] for e in states]
    assert seqs == sorted(seqs) and all(e.last_event_id == str(e.seq) for e in states)
    assert {e.job_id for e in got} == {job.id}
    logs = [e for e in got if e.kind == "log"]
    assert "".join(e.data["text"] for e in logs) == "one\nhéllo ✓\n"
    assert logs[0].data["offset"] == 0 and logs[0].data["attempt"] == 1
    assert all(a.data["next_offset"] == b.data["offset"] for a, b in itertools.pairwise(logs))
    assert got.index(logs[-1]) < got.index(states[-1])  # output before the end state
    assert got[-1] == StreamEvent("end", {"job_id": job.id, "status": "succeeded"}, str(seqs[-1]))


def test_resumption_skips_what_was_seen(live: LiveServer) -> None:
    with live.client() as c:
        job = c.submit("true")
        c.wait(job.id)
    path = f"/v1/jobs/{job.id}/events/stream"
    full = _raw(live, path, kind="state")
    assert [json.loads(m.data).get("to_state") for m in full] == [*STATES, None]
    seen = full[1].id
    assert seen is not None
    expected = ["running", "succeeded", "end"]
    by_header = _raw(live, path, headers={"Last-Event-ID": seen}, kind="state")
    assert [
        m.event if m.event == "end" else json.loads(m.data)["to_state"] for m in by_header
    ] == expected
    assert _raw(live, path, kind="state", after=seen) == by_header
    # an EventSource reconnects with the URL it started with: the header wins
    assert _raw(live, path, headers={"Last-Event-ID": seen}, kind="state", after=0) == by_header
    bad = httpx.get(
        live.url + path,
        headers={"Authorization": f"Bearer {live.admin_key}", "Last-Event-ID": "x"},
    )
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["message"]


def test_tenant_stream_filters_and_never_shows_other_tenants(live: LiveServer) -> None:
    with live.client(_other_tenant(live)) as other:
        foreign = other.submit("echo other")
        other.wait(foreign.id)
    with live.client() as c:
        a, b = c.submit("echo a"), c.submit("echo b")
        seen: list[StreamEvent] = []
        with c.stream_events(after=0, kinds=["state"]) as events:
            for event in events:
                seen.append(event)
                if sum(e.to_state == "succeeded" for e in seen) == 2:
                    break
        assert {e.job_id for e in seen} == {a.id, b.id}
        assert {e.kind for e in seen} == {"state"}
        for job in (a, b):
            assert [e.to_state for e in seen if e.job_id == job.id] == STATES
        with c.stream_events(after=0, kinds=["state"]) as events:
            assert next(events).seq == seen[0].seq  # the same from the same point
        finals = _first(c, 2, {"after": 0, "to_state": "succeeded"})
        assert {(e.job_id, e.to_state) for e in finals} == {
            (a.id, "succeeded"),
            (b.id, "succeeded"),
        }
        only_a = _first(c, 4, {"after": 0, "job_id": a.id})
        assert {e.job_id for e in only_a} == {a.id}
        # without `after` a stream starts now: the next job's events, not the history
        with c.stream_events() as events:
            later = c.submit("true")
            first = next(events)
        assert (first.job_id, first.to_state) == (later.id, "queued")
        bad = c._http.get("/v1/events/stream", params={"status": "bogus"})
        assert bad.status_code == 422 and "status" in bad.json()["message"]


def _first(client: Any, n: int, params: dict[str, Any]) -> list[StreamEvent]:
    """The first ``n`` events of a tenant stream with raw query parameters."""
    out: list[StreamEvent] = []
    with client._http.stream("GET", "/v1/events/stream", params=params) as resp:
        assert resp.status_code == 200
        for message in parse_sse(resp.iter_lines()):
            out.append(StreamEvent(message.event, json.loads(message.data), message.id))
            if len(out) == n:
                return out
    raise AssertionError("the stream ended")


def test_a_state_change_reaches_the_stream(idle: LiveServer) -> None:
    """A sanity bound only; bench/sse_latency.py measures the latency target."""
    principal = Principal(tenant_id="default", key_id="t", key_name="tester", role=Role.ADMIN)
    with idle.client() as c:
        job = c.submit("true")
        with c.stream_events(job.id, kinds=["state"]) as events:
            assert next(events).to_state == "queued"
            start = time.monotonic()
            idle.services.jobs.cancel(principal, job.id)
            changed = next(events)
            elapsed = time.monotonic() - start
            assert next(events) == StreamEvent(
                "end", {"job_id": job.id, "status": "cancelled"}, str(changed.seq)
            )
    assert changed.to_state == "cancelled"
    assert elapsed < 5.0


def test_a_quiet_stream_gets_heartbeats(idle: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_routes, "HEARTBEAT_S", 0.05)
    with idle.client() as c:
        job = c.submit("true")
    auth = {"Authorization": f"Bearer {idle.admin_key}"}
    url = f"{idle.url}/v1/jobs/{job.id}/events/stream"
    with httpx.stream("GET", url, headers=auth, timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith(":")) == ": keep-alive"


def test_a_job_that_is_not_yours_is_404_before_the_stream(live: LiveServer) -> None:
    with live.client(_other_tenant(live)) as other:
        foreign = other.submit("true")
    with live.client() as c:
        for job_id in (foreign.id, "no-such-job"):
            resp = c._http.get(f"/v1/jobs/{job_id}/events/stream")
            assert resp.status_code == 404
            assert resp.headers["content-type"] == "application/json"
            assert resp.json()["code"] == "NOT_FOUND"
            with pytest.raises(NotFound):
                c.stream_events(job_id)


def test_sdk_watch_returns_the_ended_job(live: LiveServer) -> None:
    seen: list[StreamEvent] = []
    with live.client() as c:
        job = c.submit([PY, "-c", "import sys; print('x'); sys.exit(3)"])
        final = c.watch(job.id, seen.append)
    assert isinstance(final, Job) and final.status == "failed" and final.exit_code == 3
    assert [e.to_state for e in seen if e.kind == "state"] == [*STATES[:-1], "failed"]
    assert any(e.kind == "log" and "x" in e.data["text"] for e in seen)
    assert seen[-1].kind == "end" and seen[-1].data["status"] == "failed"


def test_cli_status_watch_exits_with_the_jobs_code(live: LiveServer) -> None:
    env = {"JOBYARD_URL": live.url, "JOBYARD_API_KEY": live.admin_key, "NO_COLOR": "1"}
    with live.client() as c:
        ok = c.submit([PY, "-c", "import time; time.sleep(0.3)"])
        bad = c.submit([PY, "-c", "import sys; sys.exit(3)"])
    runner = CliRunner()
    result = runner.invoke(cli_app, ["status", ok.id, "--watch"], env=env)
    assert result.exit_code == exitcodes.OK, result.output
    assert f"job {ok.id} succeeded" in result.stdout
    result = runner.invoke(cli_app, ["status", bad.id, "-w", "--json"], env=env)
    assert result.exit_code == exitcodes.JOB_FAILED, result.output
    assert json.loads(result.stdout)["exit_code"] == 3


def test_parse_sse_follows_the_standard() -> None:
    lines = [
        ": a comment",
        "retry: 1500",
        "id: 7",
        "event: state",
        "data: {",
        'data:  "a": 1}',
        "",
        "data",  # a field without a colon has an empty value
        "",
        "id: 8",  # an id without data moves the resume point, dispatches nothing
        "",
        "event: end",
        "data: x",  # incomplete at the end of the stream: not dispatched
    ]
    assert list(parse_sse(lines)) == [
        ServerSentEvent("state", '{\n "a": 1}', "7", 1500),
        ServerSentEvent("message", "", "7", 1500),
    ]
    assert [m.id for m in parse_sse(["id: 8", "", "data: y", ""])] == ["8"]


def test_progress_display_follows_states_and_progress() -> None:
    progress = make_progress(Console(file=io.StringIO(), force_terminal=True, width=200))
    display = JobDisplay(progress, Job(id="j1", status="queued"))
    (task,) = progress.tasks
    assert task.total is None and task.description.endswith("queued[/]")
    display.on_event(StreamEvent("state", {"to_state": "running"}))
    eta = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    display.on_event(
        StreamEvent("progress", {"data": {"percent": 40.0, "stage": "scoring", "eta": eta}})
    )
    (task,) = progress.tasks  # read again: its total was None above
    assert (task.total, task.completed) == (100.0, 40.0)
    assert "running[/] · scoring" in task.description
    assert EtaColumn().render(task).plain == ""  # one report: no rate worth showing yet
    assert display.first_progress is not None
    display.first_progress = (display.first_progress[0] - watch.ETA_AFTER_S, 40.0)
    display.on_event(StreamEvent("progress", {"data": {"percent": 41.0, "eta": eta}}))
    assert EtaColumn().render(task).plain in ("eta 4m 59s", "eta 5m 00s")
    display.on_event(
        StreamEvent("progress", {"data": {"records_processed": 3, "total_records": 4}})
    )
    assert task.completed == 75.0 and task.fields["eta"] is None
    display.on_event(StreamEvent("state", {"to_state": "queued"}))  # a retry starts over
    assert task.total is None and "scoring" not in task.description
