"""The job lifecycle through the SDK over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from jobyard import Client
from jobyard.sdk import errors as sdk_errors
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory, wait_for
from tests.support import procs

PY = sys.executable


def test_submit_run_succeed(client: Client) -> None:
    job = client.submit(
        [
            PY,
            "-c",
            "import json,os;print('hi', json.load(open('parameters.json'))['n'], os.environ['JOBYARD_PARAMETERS'])",
        ],
        name="hello",
        priority="high",
        parameters={"n": 7},
        metadata={"team": "risk"},
    )
    assert job.status in ("queued", "starting", "running", "succeeded")
    done = client.wait(job.id, timeout=20)
    assert done.status == "succeeded"
    assert done.exit_code == 0
    assert done.error_type is None
    assert done.message == "Job finished successfully."
    assert done.metadata == {"team": "risk"}
    assert done.node_id == "test-node"
    assert done.started_at is not None and done.ended_at is not None
    assert done.elapsed_time_ms is not None and done.queue_time_ms is not None
    assert "hi 7" in client.logs(job.id)
    assert '{"n": 7}' in client.logs(job.id)
    states = [e.to_state for e in client.events(job.id) if e.kind == "state"]
    assert states == ["queued", "starting", "running", "succeeded"]


def test_shell_entrypoint_and_env(client: Client) -> None:
    job = client.submit("echo $GREETING $((1+2)) | tr a-z A-Z", env={"GREETING": "hello"})
    assert client.wait(job.id, timeout=20).status == "succeeded"
    assert client.logs(job.id).strip() == "HELLO 3"


def test_nonzero_exit_fails_with_log_tail(client: Client) -> None:
    job = client.submit([PY, "-c", "import sys; print('boom line'); sys.exit(3)"])
    done = client.wait(job.id, timeout=20)
    assert done.status == "failed"
    assert done.exit_code == 3
    assert done.error_type == "ENTRYPOINT_COMMAND_ERROR"
    assert "exit code 3" in (done.message or "")
    assert "boom line" in (done.message or "")


def test_missing_program_is_a_start_error(client: Client) -> None:
    job = client.submit(["/nonexistent/program", "x"])
    done = client.wait(job.id, timeout=20)
    assert done.status == "failed"
    assert done.error_type == "ENTRYPOINT_COMMAND_START_ERROR"
    assert "/nonexistent/program" in (done.message or "")


def test_timeout(client: Client) -> None:
    job = client.submit([PY, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    done = client.wait(job.id, timeout=20)
    assert done.status == "timed_out"
    assert done.error_type == "TIMEOUT"
    assert "timeout of 0.5 s" in (done.message or "")


def test_a_timeout_fires_when_the_supervisor_slept(
    make_services: ServicesFactory, serve: Callable[[Services], LiveServer]
) -> None:
    """With no job running the supervisor sleeps until its next heartbeat (an hour
    here); the job's start wakes it, so its timeout still fires."""
    services = make_services(
        start=False,
        heartbeat_interval_s=3600.0,
        outage_tolerance_s=7200.0,
        lease_ttl_s=7300.0,
        reap_interval_s=3600.0,
    )
    assert services.dispatcher is not None
    supervisor = services.dispatcher.supervisor
    beaten = threading.Event()
    heartbeat = supervisor.heartbeat

    def beat_and_say() -> None:
        heartbeat()
        beaten.set()

    supervisor.heartbeat = beat_and_say  # type: ignore[method-assign]
    services.start()
    assert beaten.wait(30)  # its first round is done: it sleeps now
    with serve(services).client() as client:
        job = client.submit([PY, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
        done = client.wait(job.id, timeout=20)
    assert done.status == "timed_out"
    assert done.error_type == "TIMEOUT"


STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: print('got SIGTERM, ignoring', flush=True))
child = subprocess.Popen([sys.executable, '-c', 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])
open('pids', 'w').write(f'{os.getpid()} {child.pid}')
print('ready', flush=True)
time.sleep(600)
"""


def _pids(live: LiveServer, client: Client, job_id: str) -> list[int]:
    """Host pids of the job's processes, once its child has started."""
    path = live.services.settings.data_dir / "jobs" / job_id / "work" / "pids"
    wait_for(lambda: path.exists() and path.read_text())
    pid = wait_for(lambda: client.get(job_id).pid)
    pids = procs.tree(pid)
    assert len(pids) >= 2, pids  # the job and its child (and the sandbox around them)
    return pids


@pytest.mark.parametrize("force", [False, True])
def test_cancel_running_job_kills_its_tree(live: LiveServer, client: Client, force: bool) -> None:
    job = client.submit([PY, "-c", STUBBORN])
    pids = _pids(live, client, job.id)
    wait_for(lambda: client.get(job.id).status == "running")
    answer = client.cancel(job.id, force=force, reason="test")
    assert answer.status in ("cancelling", "cancelled")
    done = client.wait(job.id, timeout=20)
    assert done.status == "cancelled"
    assert done.error_type == "CANCELLED"
    wait_for(lambda: procs.gone(pids), timeout=10)
    log = client.logs(job.id)
    assert ("got SIGTERM" in log) is (not force)
    with pytest.raises(sdk_errors.Conflict) as info:
        client.cancel(job.id)
    assert info.value.status_code == 409


def test_cancel_queued_job_at_once(make_services, serve) -> None:
    live = serve(make_services(slots=1))
    with live.client() as client:
        blocker = client.submit([PY, "-c", "import time; time.sleep(60)"])
        wait_for(lambda: client.get(blocker.id).status == "running")
        queued = client.submit("echo never")
        assert client.get(queued.id).status == "queued"
        cancelled = client.cancel(queued.id)
        assert cancelled.status == "cancelled"
        assert client.logs(queued.id) == ""
        client.cancel(blocker.id, force=True)
        assert client.wait(blocker.id, timeout=20).status == "cancelled"
        assert client.get(queued.id).attempt == 0


def test_cancel_finished_job_is_409(client: Client) -> None:
    job = client.submit("true")
    client.wait(job.id, timeout=20)
    with pytest.raises(sdk_errors.Conflict) as info:
        client.cancel(job.id)
    assert "already ended" in info.value.message


def test_idempotent_submit(client: Client) -> None:
    first = client.submit("echo once", idempotency_key="key-1")
    again = client.submit("echo once", idempotency_key="key-1")
    assert again.id == first.id
    with pytest.raises(sdk_errors.Conflict) as info:
        client.submit("echo different", idempotency_key="key-1")
    assert info.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert len(client.list(limit=10).items) == 1


def test_scheduled_job_waits_for_its_time(client: Client) -> None:
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) + timedelta(seconds=1.0)
    job = client.submit("echo later", scheduled_at=at)
    assert job.status == "scheduled"
    done = client.wait(job.id, timeout=20)
    assert done.status == "succeeded"
    assert done.started_at is not None and done.started_at >= at


def test_job_env_has_no_server_secrets(
    make_services,
    serve,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBYARD_DATABASE_URL", "postgresql://secret-db")
    monkeypatch.setenv("JOBYARD_API_KEY", "jy_secret_key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    live = serve(make_services())
    with live.client() as client:
        job = client.submit([PY, "-c", "import json,os; print(json.dumps(dict(os.environ)))"])
        assert client.wait(job.id, timeout=20).status == "succeeded"
        env = json.loads(client.logs(job.id))
    assert "secret" not in json.dumps(env)
    assert env["JOBYARD_JOB_ID"] == job.id
    assert env["JOBYARD_API_URL"].startswith("http://")
    assert Path(env["JOBYARD_WORKDIR"]).name == "work"


def test_usage_is_sampled(client: Client) -> None:
    code = (
        "import time; x = bytearray(60_000_000); t = time.time()\nwhile time.time() - t < 1.2: pass"
    )
    job = client.submit([PY, "-c", code])
    done = client.wait(job.id, timeout=20)
    assert done.status == "succeeded"
    assert done.usage is not None
    assert (done.usage.peak_rss_bytes or 0) > 50_000_000
    assert (done.usage.cpu_time_s or 0) > 0.2  # sampled while it ran; the machine may be busy


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as another user needs a root server")
@pytest.mark.skipif(
    not os.path.exists("/usr/bin/python3"), reason="needs a system python3 nobody can run"
)
def test_jobs_can_run_as_another_user(make_services, serve, tmp_path: Path) -> None:
    live = serve(make_services(run_as_user="nobody"))
    with live.client() as client:
        client.create_folder("ro")
        (tmp_path / "x.txt").write_text("data")
        client.upload("ro", tmp_path / "x.txt")
        code = (
            "import getpass,os\nprint(getpass.getuser())\nopen('output/o.txt','w').write('ok')\n"
            "try:\n    open('input/x.txt','a').write('no')\nexcept PermissionError:\n    print('input is read-only')\n"
            "print('params', open('parameters.json').read())"
        )
        job = client.submit(["/usr/bin/python3", "-c", code], input_folder="ro")
        done = client.wait(job.id, timeout=30)
        log = client.logs(job.id)
        assert done.status == "succeeded", log
        assert "nobody" in log and "input is read-only" in log
        assert [f.path for f in client.results(job.id).artifacts or []] == ["o.txt"]
