"""Ray's own ``JobSubmissionClient`` and ``ray job`` CLI against a live jobyard server,
on SQLite and PostgreSQL (``docs/reference/compat-ray.md``)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from jobyard.domain.auth import Role
from tests.conftest import GATES, LiveServer, wait_for

pytestmark = [
    pytest.mark.compat,
    # Ray 2.60's tail_job_logs passes ssl=None to aiohttp
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),
]

PY = sys.executable
RAY = str(Path(sys.executable).parent / "ray")
#: variables through which Ray's client would pick another server or credential
RAY_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_JOB_HEADERS", "RAY_AUTH_MODE")


@pytest.fixture
def ray(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> JobSubmissionClient:
    for name in RAY_VARS:
        monkeypatch.delenv(name, raising=False)
    return JobSubmissionClient(
        address=live.url, headers={"Authorization": f"Bearer {live.admin_key}"}
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    (d / "script.py").write_text(
        "import os, sys\n"
        "print('greeting:', os.environ['GREETING'])\n"
        "print('second line')\n"
        "sys.exit(int(os.environ.get('EXIT', '0')))\n"
    )
    return d


def _ended(ray: JobSubmissionClient, sid: str) -> Any:
    return wait_for(lambda: (i := ray.get_job_info(sid)).status.is_terminal() and i, timeout=30)


def _tail(ray: JobSubmissionClient, sid: str) -> str:
    async def collect() -> str:
        return "".join([chunk async for chunk in ray.tail_job_logs(sid)])

    return asyncio.run(collect())


def test_submit_with_working_dir_env_and_metadata(
    ray: JobSubmissionClient, workdir: Path, live: LiveServer
) -> None:
    assert ray.get_version() == "4"
    sid = ray.submit_job(
        entrypoint=f"{PY} script.py",
        runtime_env={"env_vars": {"GREETING": "hello ray"}, "working_dir": str(workdir)},
        metadata={"team": "risk"},
    )
    assert sid.startswith("raysubmit_") and len(sid) == 26
    info = _ended(ray, sid)
    assert info.status == JobStatus.SUCCEEDED
    assert ray.get_job_status(sid) == JobStatus.SUCCEEDED
    assert info.type == "SUBMISSION" and info.submission_id == sid
    assert info.entrypoint == f"{PY} script.py"
    assert info.metadata == {"team": "risk"}
    assert info.driver_exit_code == 0 and info.error_type is None
    assert info.driver_info is not None and info.driver_info.pid.isdigit()
    assert info.driver_node_id == "test-node"
    with live.client() as c:
        native = c.get(info.job_id)  # job_id is the jobyard id
    assert native.created_at is not None and native.ended_at is not None
    assert info.start_time == int(native.created_at.timestamp() * 1000)
    assert info.end_time == int(native.ended_at.timestamp() * 1000)
    assert info.runtime_env["env_vars"] == {"GREETING": "hello ray"}
    assert info.runtime_env["working_dir"].startswith("gcs://_ray_pkg_")
    logs = ray.get_job_logs(sid)
    assert "greeting: hello ray\nsecond line\n" in logs
    assert _tail(ray, sid) == logs
    assert ray.get_job_info(info.job_id).submission_id == sid  # by jobyard id too
    assert sid in {j.submission_id for j in ray.list_jobs()}


def test_tail_follows_a_running_job(ray: JobSubmissionClient, tmp_path: Path) -> None:
    gate = tmp_path / GATES / "gate"
    code = (
        "import os,time\nprint('before', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\nprint('after')"
    )
    sid = ray.submit_job(entrypoint=shlex.join([PY, "-c", code]))

    async def follow() -> list[str]:
        seen: list[str] = []
        async for chunk in ray.tail_job_logs(sid):
            seen.append(chunk)
            if "before" in chunk:
                gate.touch()
        return seen

    text = "".join(asyncio.run(follow()))
    assert text.index("before") < text.index("after")
    assert ray.get_job_status(sid) == JobStatus.SUCCEEDED


def test_failure_maps_exit_code_and_error_type(ray: JobSubmissionClient, workdir: Path) -> None:
    sid = ray.submit_job(
        entrypoint=f"{PY} script.py",
        runtime_env={"env_vars": {"GREETING": "x", "EXIT": "3"}, "working_dir": str(workdir)},
        submission_id="failing-1",
    )
    assert sid == "failing-1"
    info = _ended(ray, sid)
    assert info.status == JobStatus.FAILED
    assert info.driver_exit_code == 3
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"
    assert "exit code 3" in info.message and "second line" in info.message


def test_stop_delete_and_duplicate_ids(ray: JobSubmissionClient) -> None:
    sid = ray.submit_job(entrypoint="sleep 30", submission_id="sleepy")
    wait_for(lambda: ray.get_job_status(sid) == JobStatus.RUNNING, timeout=20)
    with pytest.raises(RuntimeError, match=r"status code 500: .*non-terminal state RUNNING"):
        ray.delete_job(sid)
    with pytest.raises(RuntimeError) as dup:
        ray.submit_job(entrypoint="echo again", submission_id="sleepy")
    assert "status code 500" in str(dup.value)
    assert "Job with submission_id sleepy already exists. " in str(dup.value)
    assert "Please use a different submission_id." in str(dup.value)
    assert ray.stop_job(sid) is True
    info = _ended(ray, sid)
    assert info.status == JobStatus.STOPPED
    assert info.driver_exit_code is None and info.error_type is None
    assert info.end_time is not None
    assert ray.stop_job(sid) is False
    assert ray.delete_job(sid) is True
    with pytest.raises(RuntimeError, match="status code 404: Job sleepy does not exist"):
        ray.get_job_info(sid)
    assert "sleepy" not in {j.submission_id for j in ray.list_jobs()}


def test_py_modules_are_importable(ray: JobSubmissionClient, tmp_path: Path) -> None:
    mod = tmp_path / "greetmod"
    mod.mkdir()
    (mod / "__init__.py").write_text("WORD = 'from py_modules'\n")
    sid = ray.submit_job(
        entrypoint=f"{PY} -c 'import greetmod; print(greetmod.WORD)'",
        runtime_env={"py_modules": [str(mod)]},
    )
    assert _ended(ray, sid).status == JobStatus.SUCCEEDED
    assert "from py_modules" in ray.get_job_logs(sid)


def test_refusals(ray: JobSubmissionClient, live: LiveServer) -> None:
    with pytest.raises(RuntimeError, match=r"status code 400: .*pip"):
        ray.submit_job(entrypoint="echo", runtime_env={"pip": ["requests"]})
    with pytest.raises(RuntimeError, match=r"status code 400: .*https://example.com/x.zip"):
        ray.submit_job(entrypoint="echo", runtime_env={"working_dir": "https://example.com/x.zip"})
    with pytest.raises(RuntimeError, match=r"status code 400: .*were not uploaded"):
        ray.submit_job(entrypoint="echo", runtime_env={"working_dir": "gcs://_ray_pkg_00.zip"})
    with pytest.raises(RuntimeError, match="status code 404: Job nope does not exist"):
        ray.get_job_info("nope")
    auth = {"Authorization": f"Bearer {live.admin_key}"}
    r = httpx.post(f"{live.url}/api/jobs", json={"entrypoint": "echo", "retries": 2}, headers=auth)
    assert r.status_code == 400 and "unexpected keyword argument 'retries'" in r.text
    with pytest.raises(AuthenticationError, match="Authentication required"):
        JobSubmissionClient(address=live.url)
    with pytest.raises(AuthenticationError, match="Authentication failed"):
        JobSubmissionClient(address=live.url, headers={"Authorization": "Bearer jy_no_pe"})
    with pytest.raises(aiohttp.WSServerHandshakeError, match="404"):
        _tail(ray, "nope")
    tail_url = live.url.replace("http", "ws", 1) + "/api/jobs/nope/logs/tail"
    for headers, status in (({}, 401), ({"Authorization": "Bearer jy_no_pe"}, 403), (auth, 404)):
        with pytest.raises(InvalidStatus) as refused:
            connect(tail_url, additional_headers=headers).close()
        assert refused.value.response.status_code == status


def test_packages_are_streamed_and_kept_per_tenant(live: LiveServer) -> None:
    url = f"{live.url}/api/packages/gcs/_ray_pkg_abc123.zip"
    auth = {"Authorization": f"Bearer {live.admin_key}"}
    live.services.auth.store.ensure_tenant("other", "Other", live.services.clock.now())
    _, other_key = live.services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    other = {"Authorization": f"Bearer {other_key}"}
    assert httpx.get(url, headers=auth).status_code == 404
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # above the 1 MiB limit of ordinary bodies
        zf.writestr("data.bin", os.urandom(3 * 1024 * 1024))
    r = httpx.put(url, content=buf.getvalue(), headers=auth)
    assert (r.status_code, r.content) == (200, b"")
    found = httpx.get(url, headers=auth)
    assert (found.status_code, found.content) == (200, b"")
    assert httpx.get(url, headers=other).status_code == 404
    r = httpx.put(url.replace("abc123", "garbage"), content=b"not a zip", headers=auth)
    assert r.status_code == 400 and "not a zip archive" in r.text
    bad = f"{live.url}/api/packages/gcs/..%2Fescape.zip"
    assert httpx.put(bad, content=b"x", headers=auth).status_code in (400, 404)
    assert (
        httpx.put(f"{live.url}/api/packages/s3/x.zip", content=b"x", headers=auth).status_code
        == 400
    )


def _ray_job(live: LiveServer, env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """``ray job <command> --address <live> <args>`` in a subprocess: (exit code, output)."""
    cmd = [RAY, "job", args[0], "--address", live.url, *args[1:]]
    p = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    return p.returncode, p.stdout + p.stderr


#: the CLI's behaviour does not depend on the database, and each call costs a Ray import
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ray_job_cli(
    live: LiveServer, ray: JobSubmissionClient, workdir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    headers = {**env, "RAY_JOB_HEADERS": json.dumps({"Authorization": f"Bearer {live.admin_key}"})}
    token = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": live.admin_key}
    code, out = _ray_job(
        live, headers, tmp_path,
        "submit", "--working-dir", str(workdir), "--submission-id", "cli-1",
        "--runtime-env-json", json.dumps({"env_vars": {"GREETING": "from cli"}}),
        "--metadata-json", json.dumps({"via": "cli"}), "--", PY, "script.py",
    )  # fmt: skip
    assert code == 0, out
    assert "greeting: from cli" in out and "Job 'cli-1' succeeded" in out
    assert ray.get_job_info("cli-1").metadata == {"via": "cli"}
    code, out = _ray_job(live, headers, tmp_path, "status", "cli-1")
    assert code == 0 and "Job 'cli-1' succeeded" in out, out
    code, out = _ray_job(live, token, tmp_path, "logs", "cli-1")  # Ray's token auth
    assert code == 0 and "greeting: from cli\nsecond line" in out, out
    code, out = _ray_job(live, headers, tmp_path, "logs", "--follow", "cli-1")
    assert code == 0 and "greeting: from cli\nsecond line" in out, out
    ray.submit_job(entrypoint="sleep 30", submission_id="cli-sleep")
    code, out = _ray_job(live, headers, tmp_path, "list")
    assert code == 0 and "submission_id='cli-1'" in out and "submission_id='cli-sleep'" in out
    code, out = _ray_job(live, headers, tmp_path, "stop", "cli-sleep")
    assert code == 0 and "Job 'cli-sleep' was stopped" in out, out
    code, out = _ray_job(live, headers, tmp_path, "delete", "cli-sleep")
    assert code == 0 and "deleted successfully" in out, out
    assert [j.submission_id for j in ray.list_jobs()] == ["cli-1"]
