"""A real ``jobyard serve`` subprocess for acceptance tests, and the CLI run as a local
user would run it (only ``JOBYARD_HOME`` set)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.acceptance.hooks import SERVER_LOGS
from tests.conftest import GATES, wait_for

PY = sys.executable
JOBYARD = str(Path(sys.executable).parent / "jobyard")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}

#: short timings for the test servers
FAST_ENV = {
    "JOBYARD_HEARTBEAT_INTERVAL_S": "0.2",
    "JOBYARD_LEASE_TTL_S": "7",
    "JOBYARD_OUTAGE_TOLERANCE_S": "4",
    "JOBYARD_POLL_INTERVAL_S": "0.2",
    "JOBYARD_STOP_GRACE_S": "1",
    "JOBYARD_REAP_INTERVAL_S": "0.5",
    "JOBYARD_SAMPLE_INTERVAL_S": "0.2",
    # several tenants also where the host cannot sandbox jobs (tests/security/test_sandbox.py)
    "JOBYARD_ALLOW_UNSANDBOXED_JOBS": "1",
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
    # the servers' per-user credentials go there, not to the user's ~/.config/jobyard
    env["XDG_CONFIG_HOME"] = str(home.parent / "user-config")
    env["COLUMNS"] = "120"  # a fixed width for rich's tables and panels
    return env


class Server:
    """One ``jobyard serve`` subprocess."""

    start_timeout_s = 30.0  #: how long a start may take until the server answers

    def __init__(
        self,
        home: Path,
        db_url: str,
        log_path: Path,
        port: int,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.env = env or {}
        self.home = home
        self.db_url = db_url
        self.log_path = log_path
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        cmd = [JOBYARD, "serve", "--port", str(self.port), "--slots", "2"]
        cmd += ["--database-url", self.db_url, *self.args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env={**_clean_env(self.home), **FAST_ENV, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home.parent,
            )
        wait_for(self._ready, timeout=self.start_timeout_s, interval=0.05)
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
        return self.get_json(f"/v1/jobs/{job_id}")

    def system_status(self) -> dict[str, Any]:
        return self.get_json("/v1/system/status")

    def get_json(self, path: str) -> dict[str, Any]:
        creds = json.loads((self.home / "credentials.json").read_text())
        resp = httpx.get(
            f"{self.url}{path}",
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

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        log_path = tmp_path / f"serve-{len(servers)}.log"
        logs.append(log_path)
        port = _free_port()
        while port in {s.port for s in servers}:  # a restarted server gets a new port
            port = _free_port()
        gates = tmp_path / GATES  # files the tests' jobs wait on (visible in the sandbox)
        gates.mkdir(exist_ok=True)
        env = {"JOBYARD_SANDBOX_READ_ONLY": str(gates), **(env or {})}
        server = Server(home, db_url, log_path, port, args, env)
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
