"""The ``jobyard`` CLI against a real ``jobyard serve`` process, on SQLite and PostgreSQL.

Every server is a subprocess with its own ``JOBYARD_HOME``; every CLI command is a
subprocess with only ``JOBYARD_HOME`` set (no ``JOBYARD_URL``/``JOBYARD_API_KEY``, no
flags), so it finds the server through ``credentials.json`` like a local user does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from jobyard.store.database import Database
from jobyard.store.jobs import JobStore
from tests.acceptance.serverproc import (
    ENDED,
    JOBYARD,
    PY,
    Server,
    StartServer,
    _assert_one_line_error,
    _clean_env,
    _describe,
    _gone,
    _submit_quiet,
    jobyard,
    jobyard_all,
)
from tests.conftest import GATES, wait_for
from tests.support import procs

pytestmark = pytest.mark.acceptance

# ------------------------------------------------------------------------------------------


def test_submit_wait_exit_codes(server: Server) -> None:
    ok, failed, slow = jobyard_all(
        server,
        [
            "submit",
            "--name",
            "hello",
            "--priority",
            "high",
            "--wait",
            "--",
            PY,
            "-c",
            "print('hi')",
        ],
        ["submit", "--wait", "--", PY, "-c", "import sys; sys.exit(3)"],
        ["submit", "--timeout", "0.5", "--wait", "--", PY, "-c", "import time; time.sleep(30)"],
    )
    assert ok.returncode == 0, _describe(ok)
    match = re.search(r"job (\S+) succeeded · exit code 0", ok.stdout)
    assert match, _describe(ok)
    job = server.get_job(match.group(1))
    assert (job["name"], job["priority"], job["status"]) == ("hello", "high", "succeeded")
    assert job["argv"] == [PY, "-c", "print('hi')"]

    assert failed.returncode == 1, _describe(failed)
    assert re.search(r"job \S+ failed · exit code 3", failed.stdout), _describe(failed)

    assert slow.returncode == 3, _describe(slow)
    assert re.search(r"job \S+ timed_out", slow.stdout), _describe(slow)
    assert "timeout of 0.5 s" in slow.stdout, _describe(slow)


def test_quiet_submit_status_and_list(server: Server) -> None:
    ok_id = _submit_quiet(server, PY, "-c", "print('ok')")
    bad_id = _submit_quiet(server, PY, "-c", "import sys; sys.exit(1)")
    assert ok_id != bad_id
    server.wait_status(ok_id, ENDED)
    server.wait_status(bad_id, ENDED)

    status, status_json, listed, listed_json = jobyard_all(
        server,
        ["status", ok_id],
        ["status", bad_id, "--json"],
        ["list", "--status", "succeeded"],
        ["list", "--json"],
    )
    assert status.returncode == 0, _describe(status)
    assert ok_id in status.stdout and "succeeded" in status.stdout, _describe(status)

    assert status_json.returncode == 0, _describe(status_json)
    bad = json.loads(status_json.stdout)
    assert (bad["id"], bad["status"], bad["exit_code"]) == (bad_id, "failed", 1)

    assert listed.returncode == 0, _describe(listed)
    assert ok_id in listed.stdout, _describe(listed)
    assert bad_id not in listed.stdout, _describe(listed)

    assert listed_json.returncode == 0, _describe(listed_json)
    page = json.loads(listed_json.stdout)
    assert [j["id"] for j in page["items"]] == [bad_id, ok_id]  # newest first
    assert page["summary"]["total"] == 2
    assert page["summary"]["by_status"] == {"succeeded": 1, "failed": 1}


FOLLOW_JOB = """
import os, sys, time
go = sys.argv[1]
for n in range(1, 11):
    if n == 6:  # wait until the test has seen the first half through `logs --follow`
        deadline = time.monotonic() + 20
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.02)
    print(f"line {n}", flush=True)
    time.sleep(0.1)
"""


def test_logs_follow_streams_until_the_job_ends(server: Server, tmp_path: Path) -> None:
    go = tmp_path / GATES / "go"
    job_id = _submit_quiet(server, PY, "-c", FOLLOW_JOB, str(go))
    server.wait_status(job_id, {"running"})

    follow = subprocess.Popen(
        [JOBYARD, "logs", job_id, "--follow"],
        env=_clean_env(server.home),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen: list[str | None] = []
        deadline = time.monotonic() + 20
        while "line 5" not in seen:  # the first half, streamed while the job runs
            try:
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"logs -f printed only {seen} within 20 s") from None
            assert seen[-1] is not None, f"logs -f ended early: {seen}"
        assert server.get_job(job_id)["status"] == "running"
        go.touch()
        code = follow.wait(timeout=20)  # it must end by itself once the job has ended
        reader.join(10)
        while (item := lines.get_nowait()) is not None:
            seen.append(item)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        stderr = follow.stderr.read() if follow.stderr else ""
        for stream in (follow.stdout, follow.stderr):
            if stream is not None:
                stream.close()
    assert code == 0, stderr
    assert seen == [f"line {n}" for n in range(1, 11)], stderr
    assert server.get_job(job_id)["status"] == "succeeded"


def test_cancel_force_running_job(server: Server) -> None:
    job_id = _submit_quiet(server, PY, "-c", "import time; time.sleep(600)")
    running = server.wait_status(job_id, {"running"})
    pid = running["pid"]
    assert pid and psutil.pid_exists(pid)

    cancel = jobyard(server, "cancel", job_id, "--force")
    assert cancel.returncode == 0, _describe(cancel)
    assert re.search(rf"job {job_id} (cancelling|cancelled)", cancel.stdout), _describe(cancel)

    server.wait_status(job_id, ENDED)
    status = jobyard(server, "status", job_id)
    assert status.returncode == 0, _describe(status)
    assert re.search(r"status\s+cancelled", status.stdout), _describe(status)
    assert server.get_job(job_id)["status"] == "cancelled"
    assert _gone(pid)

    again = jobyard(server, "cancel", job_id, "--force")
    assert again.returncode == 5, _describe(again)
    _assert_one_line_error(again)


PID_JOB = "import os, time; open('job.pid', 'w').write(str(os.getpid())); time.sleep(600)"


def test_restart_fails_orphaned_job_and_kills_its_process(start_server: StartServer) -> None:
    first = start_server()
    job_id = _submit_quiet(first, PY, "-c", PID_JOB)
    running = first.wait_status(job_id, {"running"})
    pid_file = first.home / "jobs" / job_id / "work" / "job.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=10)
    pids = procs.tree(running["pid"])  # the job's process (and its sandbox), as the host sees it
    node_id = (first.home / "node_id").read_text().strip()
    assert running["node_id"] == node_id
    sandboxed = first.system_status()["sandbox"]["jobs_sandboxed"]

    first.kill()
    if sandboxed:  # a job dies with its node: a retry elsewhere can never overlap it
        wait_for(lambda: procs.gone(pids), timeout=10)
    else:
        assert not _gone(running["pid"]), "without a sandbox the job survives SIGKILL"

    second = start_server()  # same JOBYARD_HOME (so same node id) and database
    assert second.url != first.url  # clients find it through the rewritten credentials.json

    second.wait_status(job_id, ENDED)
    result = jobyard(second, "status", job_id, "--json")
    assert result.returncode == 0, _describe(result)
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    assert job["error_type"] == "NODE_LOST"
    assert "server restarted" in (job["message"] or ""), job["message"]
    wait_for(lambda: procs.gone(pids), timeout=10)

    after = jobyard(second, "submit", "--wait", "--", PY, "-c", "print('after restart')")
    assert after.returncode == 0, _describe(after)
    assert "succeeded" in after.stdout, _describe(after)


def test_unknown_job_and_unreachable_server(server: Server) -> None:
    missing = jobyard(server, "status", "does-not-exist")
    assert missing.returncode == 5, _describe(missing)
    _assert_one_line_error(missing)
    assert "does-not-exist" in missing.stderr

    server.stop()
    down = jobyard(server, "list")
    assert down.returncode == 7, _describe(down)
    _assert_one_line_error(down)


def test_sigterm_stops_running_jobs(server: Server) -> None:
    """`jobyard serve` stops its jobs on SIGTERM, like on Ctrl-C (they fail as NODE_LOST)."""
    job_id = _submit_quiet(server, PY, "-c", "import time; time.sleep(600)")
    pid = server.wait_status(job_id, {"running"})["pid"]
    assert server.proc is not None
    server.stop()  # SIGTERM; asserts that the server exits within 15 s
    code = server.proc.returncode
    try:
        alive = not _gone(pid)
        assert not alive, (
            f"PRODUCT BUG: jobyard serve exited with code {code} on SIGTERM and left the "
            f"running job's process {pid} behind (its Dispatcher.stop() never ran)"
        )
    finally:
        if not _gone(pid):
            os.killpg(pid, signal.SIGKILL)
    db = Database(server.db_url)
    try:
        job = JobStore(db).get_unscoped(job_id)
    finally:
        db.dispose()
    assert job is not None
    assert (job.state.value, job.error_type) == ("failed", "NODE_LOST"), job
    assert "shut down" in (job.message or ""), job.message


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system python3 at /usr/bin")
def test_a_relative_data_directory_works_for_jobs_outside_the_virtualenv(
    start_server: StartServer,
) -> None:
    """``./scripts/serve`` runs with the relative data directory ``./.jobyard``: every
    path a job gets (its directory, the in-job helper on PYTHONPATH) must be absolute,
    also for a Python outside the project's virtualenv."""
    server = start_server(env={"JOBYARD_HOME": "home"})  # relative to the server's cwd
    code = "from jobyard import runtime; runtime.progress(50, 'half'); print('helper ok')"
    job_id = _submit_quiet(server, SYSTEM_PYTHON, "-c", code)
    done = server.wait_status(job_id, ENDED)
    logs = jobyard(server, "logs", job_id)
    assert done["status"] == "succeeded", (done["message"], logs.stdout)
    assert "helper ok" in logs.stdout
