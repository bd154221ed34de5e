"""Shared helpers of the benchmark scripts: start/stop a ``jobyard serve`` subprocess in
a fresh data directory, read its credentials, and summarise numbers.

Run the scripts with the project's virtualenv, e.g. ``.venv/bin/python bench/w1_throughput.py``.
They are measurements, not tests: nothing here is imported by the test suite.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

import jobyard

HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jobyard_command() -> list[str]:
    """``jobyard`` of the interpreter running the benchmark (the venv's script)."""
    beside = Path(sys.executable).parent / "jobyard"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("jobyard")
    if found is None:
        sys.exit("cannot find the jobyard command: run with the project's .venv/bin/python")
    return [found]


@dataclass
class Server:
    """A running ``jobyard serve`` and what a client needs to talk to it."""

    proc: subprocess.Popen[bytes]
    home: Path
    url: str
    api_key: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        """A keep-alive HTTP client authenticated with the admin key."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=timeout_s,
        )


def _server_env(home: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    # BENCH_JOBYARD_X=v sets the server's JOBYARD_X (e.g. BENCH_JOBYARD_SANDBOX=off)
    env.update({k[6:]: v for k, v in os.environ.items() if k.startswith("BENCH_JOBYARD_")})
    env["JOBYARD_HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "user-config")  # not the user's own credentials
    env.update(extra or {})
    return env


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll ``/healthz`` until it answers 200; exit with the server log if it dies."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"jobyard serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    stop_server(proc)
    sys.exit(f"jobyard serve did not become healthy in {HEALTH_TIMEOUT_S} s")


def read_credentials(home: Path) -> tuple[str, str]:
    """(url, api_key) from ``<home>/credentials.json``."""
    data = json.loads((home / "credentials.json").read_text())
    return str(data["url"]), str(data["api_key"])


def stop_server(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then wait (SIGKILL only if it does not stop in time)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"jobyard serve (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def running_server(
    *,
    slots: int,
    database_url: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    keep: bool = False,
) -> Iterator[Server]:
    """Start ``jobyard serve`` in a fresh temporary data dir on a free port; yield it once
    ``/healthz`` answers; stop it (SIGTERM, wait) and remove the data dir afterwards."""
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    log_path = home / "server.log"
    port = free_port()
    cmd = [*jobyard_command(), "serve", "--port", str(port), "--slots", str(slots)]
    if database_url:
        cmd += ["--database-url", database_url]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            env=_server_env(home, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log_path)
        url, api_key = read_credentials(home)
        yield Server(proc=proc, home=home, url=url, api_key=api_key, log_path=log_path)
    finally:
        code = stop_server(proc)
        if code not in (0, -signal.SIGTERM):
            print(f"jobyard serve exited with {code}; log: {log_path}", file=sys.stderr)
        elif not keep:
            shutil.rmtree(home, ignore_errors=True)


#: a scheduled job as the server answers a submit (2026-12), for ``null_app``
NULL_JOB = json.dumps(
    {
        "id": "069e2e14-1f95-4b81-913b-ab79ac8ce114", "name": None, "description": None,
        "job_type": None, "status": "scheduled", "priority": "normal",
        "entrypoint": "python3 -c pass", "argv": None, "parameters": {}, "metadata": {},
        "env": {}, "timeout_s": None, "scheduled_at": "2099-01-01T00:00:00Z",
        "submitted_by": "admin", "submission_id": None, "continue_on_error": False,
        "slots": 1, "attempt": 0, "exit_code": None, "error_type": None, "message": None,
        "node_id": None, "pid": None, "created_at": "2026-12-06T16:25:22.536453Z",
        "updated_at": "2026-12-06T16:25:22.536453Z", "queued_at": None, "started_at": None,
        "ended_at": None, "queue_time_ms": 5, "elapsed_time_ms": None,
        "usage": {"cpu_percent": None, "rss_bytes": None, "peak_rss_bytes": None,
                  "cpu_time_s": None},
        "progress": {"percent": None, "stage": None, "updated_at": None},
        "max_attempts": 1, "retry_on": ["failed", "timed_out", "node_lost"],
        "queue_position": None, "estimated_start": None, "warnings": None,
    },
    separators=(",", ":"),
).encode()  # fmt: skip


#: how long ``null_app`` waits before it answers (``BENCH_NULL_DELAY_US``; 0: at once)
NULL_DELAY_S = int(os.environ.get("BENCH_NULL_DELAY_US", "0")) / 1e6


async def null_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers every request with ``NULL_JOB`` (``/healthz``: 200, else
    201) at once, or after ``NULL_DELAY_S`` on the loop's timer: a server that costs almost
    nothing, to measure a client alone (and how its CPU depends on how long it waits)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if NULL_DELAY_S:
        await asyncio.sleep(NULL_DELAY_S)
    status = 200 if scope["path"] == "/healthz" else 201
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(NULL_JOB))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": NULL_JOB})


@contextmanager
def running_null_server(delay_us: int = 0) -> Iterator[Server]:
    """``null_app`` on uvicorn in a subprocess on a free port, like ``running_server``;
    ``delay_us``: each answer that much later (``NULL_DELAY_S``)."""
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-null-"))
    log_path = home / "server.log"
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "common:null_app", "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log", "--lifespan", "off"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=Path(__file__).parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "BENCH_NULL_DELAY_US": str(delay_us)},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, url, log_path)
        yield Server(proc=proc, home=home, url=url, api_key="none", log_path=log_path)
    finally:
        stop_server(proc)
        shutil.rmtree(home, ignore_errors=True)


def parse_time(text: str) -> datetime:
    """An API timestamp (``…Z``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def all_jobs(client: httpx.Client, **params: str) -> list[dict[str, object]]:
    """Every job matching ``params``, following ``next_cursor`` 500 at a time."""
    items: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": "500", **({"cursor": cursor} if cursor else {})}
        resp = client.get("/v1/jobs", params=query)
        resp.raise_for_status()
        page = resp.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0–100) with linear interpolation between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    def fmt(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def spread(values: Sequence[float]) -> Spread:
    """Median with min–max of repeated measurements."""
    return Spread(statistics.median(values), min(values), max(values))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: say how busy it was)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    """Date, cores, load and the jobyard package measured, to print before the results."""
    return (
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; load average {load_average()}; "
        f"jobyard {jobyard.__version__} from {Path(jobyard.__file__).parent}"
    )


def inode_cost_us(parent: str | None = None, files: int = 64) -> float:
    """Thread CPU µs to create one empty file in a fresh directory under ``parent`` (the
    directory the servers' data directories are made in), measured now. On an ext4 file
    system without a journal (this machine's) each new inode skips, one by one, the
    inodes its block group freed in the last minutes (``recently_deleted`` in the
    kernel): ≈ 10–20 µs on a quiet group, 100–400 µs after other runs removed thousands
    of files there. A job's setup makes eight (five directories, three files), so this
    figure moves the server's CPU per job by ≈ 8× it."""
    where = Path(tempfile.mkdtemp(prefix="jobyard-inodes-", dir=parent))
    try:
        start = time.thread_time()
        for i in range(files):
            os.close(os.open(where / str(i), os.O_WRONLY | os.O_CREAT, 0o600))
        return (time.thread_time() - start) / files * 1e6
    finally:
        shutil.rmtree(where, ignore_errors=True)


def inode_line() -> str:
    """``inode_cost_us`` as a line to print before a round."""
    return f"a new inode in {tempfile.gettempdir()}: {inode_cost_us():.0f} µs of CPU"


def describe_python(path: str) -> str:
    """``path`` (and what it resolves to) with its version, for the record."""
    version = subprocess.run(
        [path, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    real = os.path.realpath(path)
    via = f" -> {real}" if real != path else ""
    return f"{path}{via} (Python {version})"


async def asgi_post(
    app: Any, path: str, body: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """POST ``body`` to the ASGI ``app`` in-process, as uvicorn calls it (HTTP/1.1 from
    127.0.0.1, the body in one message): (status, answer body). For the benchmarks that
    measure the application without a server or a socket."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def low_quartiles(values: Sequence[float], digits: int = 0) -> str:
    """``min, p25, median`` of ``values``: the figures of CPU per operation over short
    rounds that other processes move least."""
    r = sorted(values)
    return (
        f"min {r[0]:.{digits}f}, p25 {r[len(r) // 4]:.{digits}f}, "
        f"median {statistics.median(r):.{digits}f}"
    )


@contextmanager
def in_process_app(database_url: str | None = None) -> Iterator[tuple[Any, str | None]]:
    """(the ASGI app, an admin API key) of services started in this process: SQLite in
    a fresh data dir (or ``database_url``), no dispatcher, the access log on (into
    ``server.log`` there)."""
    import logging

    from jobyard import serverlog
    from jobyard.api.app import create_app
    from jobyard.server import start_services
    from jobyard.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    with (home / "server.log").open("w") as log:
        serverlog.configure("info", "text")
        logging.getLogger().handlers[0].setStream(log)  # type: ignore[attr-defined]
        settings = Settings(data_dir=home, run_dispatcher=False, database_url=database_url)
        services, key = start_services(settings)
        try:
            yield create_app(services), key
        finally:
            services.close()
