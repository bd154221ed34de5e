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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from jobyard.store.database import Database
from jobyard.store.jobs import JobStore
from tests.acceptance.conftest import SERVER_LOGS
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

PY = sys.executable
JOBYARD = str(Path(sys.executable).parent / "jobyard")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}

#: short timings for the test servers
FAST_ENV = {
    "JOBYARD_HEARTBEAT_INTERVAL_S": "0.2",
    "JOBYARD_LEASE_TTL_S": "3",
    "JOBYARD_POLL_INTERVAL_S": "0.2",
    "JOBYARD_STOP_GRACE_S": "1",
    "JOBYARD_REAP_INTERVAL_S": "0.5",
    "JOBYARD_SAMPLE_INTERVAL_S": "0.2",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _clean_env(home: Path) -> dict[str, str]:
    """The test's environment without any ``JOBYARD_*`` variable, plus ``JOBYARD_HOME``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env["JOBYARD_HOME"] = str(home)
    env["COLUMNS"] = "120"  # a fixed width for rich's tables and panels
    return env


class Server:
    """One ``jobyard serve`` subprocess."""

    def __init__(self, home: Path, db_url: str, log_path: Path, port: int) -> None:
        self.home = home
        self.db_url = db_url
        self.log_path = log_path
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        cmd = [JOBYARD, "serve", "--port", str(self.port), "--slots", "2"]
        cmd += ["--database-url", self.db_url]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env={**_clean_env(self.home), **FAST_ENV},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home.parent,
            )
        wait_for(self._ready, timeout=30, interval=0.05)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"jobyard serve exited early with code {self.proc.returncode}")
        try:
            creds = json.loads((self.home / "credentials.json").read_text())
        except (OSError, ValueError):
            return False
        if creds.get("url") != self.url:
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, up to 15 s, then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("jobyard serve did not stop within 15 s of SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL: the server dies without stopping its jobs."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # -- direct HTTP, for polling and for checks the CLI does not show ----------------------

    def get_job(self, job_id: str) -> dict[str, Any]:
        creds = json.loads((self.home / "credentials.json").read_text())
        resp = httpx.get(
            f"{self.url}/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {creds['api_key']}"},
            timeout=10,
        )
        resp.raise_for_status()
        job: dict[str, Any] = resp.json()
        return job

    def wait_status(self, job_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.get_job(job_id)
            return job if job["status"] in statuses else None

        job: dict[str, Any] = wait_for(reached, timeout=timeout, interval=0.05)
        return job


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _job_processes(home: Path) -> list[psutil.Process]:
    """Live processes whose working directory is inside ``home`` (the jobs' workdirs)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if Path(proc.cwd()).is_relative_to(home):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str
) -> Iterator[StartServer]:
    """Start ``jobyard serve`` processes (by default all on the same ``JOBYARD_HOME`` and
    database); stop them at teardown and make sure no job process is left behind."""
    home = tmp_path / "home"
    home.mkdir()
    logs = request.node.stash.setdefault(SERVER_LOGS, [])
    servers: list[Server] = []

    def start() -> Server:
        log_path = tmp_path / f"serve-{len(servers)}.log"
        logs.append(log_path)
        port = _free_port()
        while port in {s.port for s in servers}:  # a restarted server gets a new port
            port = _free_port()
        server = Server(home, db_url, log_path, port)
        servers.append(server)
        return server.start()

    yield start
    problems = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as exc:
            problems.append(str(exc))
    leftovers = _job_processes(home)
    for proc in leftovers:
        try:
            problems.append(f"job process left behind: pid {proc.pid} {proc.cmdline()}")
            os.killpg(proc.pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            continue
    assert not problems, problems


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server()


def jobyard(server: Server, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the ``jobyard`` CLI as a local user would: only ``JOBYARD_HOME`` set."""
    return subprocess.run(
        [JOBYARD, *args],
        env=_clean_env(server.home),
        cwd=server.home.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def jobyard_all(
    server: Server, *commands: list[str], timeout: float = 30
) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent CLI commands at the same time (keeps the module fast)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: jobyard(server, *args, timeout=timeout), commands))


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _submit_quiet(server: Server, *argv: str) -> str:
    result = jobyard(server, "submit", "-q", "--", *argv)
    assert result.returncode == 0, _describe(result)
    job_id = result.stdout.strip()
    assert UUID_RE.match(job_id), _describe(result)
    return job_id


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, _describe(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), _describe(result)


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
    go = tmp_path / "go"
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
    pid = int(pid_file.read_text())
    assert pid == running["pid"]
    node_id = (first.home / "node_id").read_text().strip()
    assert running["node_id"] == node_id

    first.kill()
    assert not _gone(pid), "the job's process should survive SIGKILL of the server"

    second = start_server()  # same JOBYARD_HOME (so same node id) and database
    assert second.url != first.url  # clients find it through the rewritten credentials.json

    second.wait_status(job_id, ENDED)
    result = jobyard(second, "status", job_id, "--json")
    assert result.returncode == 0, _describe(result)
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    assert job["error_type"] == "NODE_LOST"
    assert "server restarted" in (job["message"] or ""), job["message"]
    wait_for(lambda: _gone(pid), timeout=10)

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
