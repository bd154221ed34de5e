"""Shared parts of the fault-injection scenarios: ``jobyard serve`` processes that can be
killed and restarted, the marker job, the client that retries with idempotency keys, the
analysis of marker intervals, and the cleanup of everything a scenario creates."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from bench.common import free_port, percentile

T = TypeVar("T")

#: the shared PostgreSQL server (trust authentication); every scenario makes its own
#: database on it and drops it afterwards
SHARED_PG_URL = os.environ.get(
    "JOBYARD_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
ENDED = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
ACTIVE = frozenset({"starting", "running", "cancelling"})
#: a marker line a job prints (and appends to its marker file): kind job attempt pid time
MARKER_PREFIX = "::faults::"

#: the job of the scenarios: marks its start, a tick every 50 ms, and its end, on stdout
#: (read back through the logs API) and in ``$FAULTS_MARKER_DIR`` when it can write there
JOB_SCRIPT = """\
import os, sys, time
d = float(sys.argv[1]); j = os.environ["JOBYARD_JOB_ID"]
a = os.environ.get("JOBYARD_ATTEMPT", "?"); p = os.getpid(); f = None
md = os.environ.get("FAULTS_MARKER_DIR")
if md:
    try:
        f = open(os.path.join(md, j + "." + a + "." + str(p)), "a", buffering=1)
    except OSError:
        f = None
def m(k):
    global f
    line = "%s %s %s %s %d %.3f" % (%r, k, j, a, p, time.time())
    print(line, flush=True)
    if f is not None:
        try:
            f.write(line + "\\n")
        except OSError:
            f = None
m("start"); end = time.time() + d
while time.time() < end:
    time.sleep(0.05); m("tick")
m("end")
""".replace("%r", repr(MARKER_PREFIX))


def job_python() -> str:
    """The interpreter jobs run: the system's (a sandbox shows system programs), else ours."""
    for candidate in ("/usr/bin/python3", shutil.which("python3"), sys.executable):
        if candidate and os.path.exists(candidate):
            return candidate
    return sys.executable


def job_argv(duration_s: float) -> list[str]:
    return [job_python(), "-c", JOB_SCRIPT, f"{duration_s:.2f}"]


# ---- cleanup ---------------------------------------------------------------------------

_CLEANUPS: list[tuple[str, Callable[[], None]]] = []
_LOCK = threading.Lock()


def on_cleanup(label: str, fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn`` to run at exit (LIFO) unless it ran before; returns a runner that
    runs it now (once) and forgets it."""
    entry = (label, fn)
    with _LOCK:
        _CLEANUPS.append(entry)

    def run() -> None:
        with _LOCK:
            if entry not in _CLEANUPS:
                return
            _CLEANUPS.remove(entry)
        try:
            fn()
        except Exception as exc:  # cleanup must go on
            print(f"faults: cleanup {label} failed: {exc!r}", file=sys.stderr)

    return run


def run_cleanups() -> None:
    while True:
        with _LOCK:
            if not _CLEANUPS:
                return
            label, fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as exc:
            print(f"faults: cleanup {label} failed: {exc!r}", file=sys.stderr)


atexit.register(run_cleanups)


def temp_dir(prefix: str) -> tuple[Path, Callable[[], None]]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    return path, on_cleanup(f"rm {path}", lambda: shutil.rmtree(path, ignore_errors=True))


def kill_processes_under(root: Path) -> list[int]:
    """SIGKILL every live process (and its group) whose working directory is under
    ``root``: job processes a dead server left behind. Returns their pids."""
    killed = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if not Path(proc.cwd()).is_relative_to(root):
                continue
            killed.append(proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
        except (psutil.Error, OSError):
            continue
    return killed


# ---- waiting -----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


# ---- servers -----------------------------------------------------------------------------

#: timings of the scenario servers (the lease only matters with two replicas)
FAULT_ENV = {
    "JOBYARD_STOP_GRACE_S": "1",
}


def jobyard_bin() -> str:
    beside = Path(sys.executable).parent / "jobyard"
    return str(beside) if beside.exists() else (shutil.which("jobyard") or "jobyard")


@dataclass
class ServeProc:
    """One ``jobyard serve`` that a scenario starts, kills and restarts."""

    home: Path
    port: int = field(default_factory=free_port)
    database_url: str | None = None
    node_id: str | None = None
    slots: int = 2
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home.parent / f"{self.home.name}-serve.log"
        self._forget = on_cleanup(f"jobyard serve {self.home}", self.kill)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> float:
        """Start the process; returns the seconds until ``/healthz`` answered 200."""
        cmd = [jobyard_bin(), "serve", "--port", str(self.port), "--slots", str(self.slots)]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
        env.update({"JOBYARD_HOME": str(self.home), **FAULT_ENV, **self.env})
        env["XDG_CONFIG_HOME"] = str(self.home / "user-config")  # not the user's own
        if self.node_id:
            env["JOBYARD_NODE_ID"] = self.node_id
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts} at {datetime.now()}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        wait_until(self._healthy, timeout, 0.02)
        return time.monotonic() - started

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"jobyard serve exited with {self.proc.returncode}; log {self.log_path}:\n"
                + self.log_tail()
            )
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the server dies without stopping its jobs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self._forget()

    def api_key(self) -> str:
        return str(json.loads((self.home / "credentials.json").read_text())["api_key"])

    def rss_bytes(self) -> int:
        """RSS of the server and its children."""
        proc = psutil.Process(self.pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return int(total)


# ---- databases -------------------------------------------------------------------------


def fresh_pg_database(base_url: str = SHARED_PG_URL) -> tuple[str, Callable[[], None]]:
    """A new empty database on the server of ``base_url``; returns (url, drop)."""
    import sqlalchemy as sa

    name = f"jobyard_faults_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base_url.rsplit("/", 1)[0] + f"/{name}", on_cleanup(f"drop database {name}", drop)


def pg_reachable(url: str = SHARED_PG_URL) -> str | None:
    """None when PostgreSQL at ``url`` answers, else why not."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {url} ({type(exc).__name__})"


# ---- markers and intervals ----------------------------------------------------------------


@dataclass
class Run:
    """One process of one attempt of a job, as its markers tell."""

    job_id: str
    attempt: str
    pid: int
    start: float
    last: float
    ended: bool  #: printed its end marker (the process finished its work)


def parse_markers(text: str, runs: dict[tuple[str, str, int], Run]) -> None:
    """Add the marker lines of ``text`` to ``runs`` (keyed by job, attempt, pid)."""
    for line in text.splitlines():
        if not line.startswith(MARKER_PREFIX):
            continue
        parts = line.split()
        if len(parts) != 6:
            continue
        _, kind, job_id, attempt, pid_s, at_s = parts
        try:
            pid, at = int(pid_s), float(at_s)
        except ValueError:
            continue
        key = (job_id, attempt, pid)
        run = runs.get(key)
        if run is None:
            run = runs[key] = Run(job_id, attempt, pid, at, at, False)
        run.start = min(run.start, at)
        run.last = max(run.last, at)
        run.ended = run.ended or kind == "end"


def read_marker_dir(directory: Path, runs: dict[tuple[str, str, int], Run]) -> None:
    for path in directory.iterdir():
        try:
            parse_markers(path.read_text(errors="replace"), runs)
        except OSError:
            continue


def overlapping_jobs(runs: Mapping[tuple[str, str, int], Run]) -> dict[str, float]:
    """Jobs two of whose processes ran at the same time → the longest overlap (s)."""
    by_job: dict[str, list[Run]] = {}
    for run in runs.values():
        by_job.setdefault(run.job_id, []).append(run)
    found: dict[str, float] = {}
    for job_id, job_runs in by_job.items():
        job_runs.sort(key=lambda r: r.start)
        for i, a in enumerate(job_runs):
            for b in job_runs[i + 1 :]:
                overlap = min(a.last, b.last) - max(a.start, b.start)
                if overlap > 0:
                    found[job_id] = max(found.get(job_id, 0.0), overlap)
    return found


# ---- the client --------------------------------------------------------------------------


class Api:
    """httpx against one or more replicas (the first that answers), with the admin key."""

    def __init__(self, urls: list[str], key: str, timeout: float = 10.0) -> None:
        self.urls = urls
        self.key = key
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        last: Exception | None = None
        for url in self.urls:
            try:
                return self.http.get(url + path, params=params)
            except httpx.HTTPError as exc:
                last = exc
        assert last is not None
        raise last

    def job(self, job_id: str) -> dict[str, Any] | None:
        resp = self.get(f"/v1/jobs/{job_id}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        job: dict[str, Any] = resp.json()
        return job

    def jobs(self, **params: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query: dict[str, str] = {**params, "limit": "500"}
            if cursor:
                query["cursor"] = cursor
            resp = self.get("/v1/jobs", **query)
            resp.raise_for_status()
            page = resp.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def logs_of(self, job: Mapping[str, Any], runs: dict[tuple[str, str, int], Run]) -> None:
        """Read every attempt's log of ``job`` (from each replica) into ``runs``."""
        for attempt in range(1, int(job.get("attempt") or 0) + 1):
            for url in self.urls:
                try:
                    log = self.http.get(
                        f"{url}/v1/jobs/{job['id']}/logs", params={"attempt": attempt}
                    )
                except httpx.HTTPError:
                    continue
                if log.status_code == 200:
                    parse_markers(log.text, runs)


@dataclass
class Submitter:
    """Submits marker jobs with idempotency keys, retrying connection errors and 5xx
    with the same key until a 2xx or a 4xx; records what it saw."""

    urls: list[str]
    key: str
    marker_dir: Path
    max_attempts: int = 2
    accepted: dict[str, str] = field(default_factory=dict)  #: idempotency key → job id
    refused: list[str] = field(default_factory=list)  #: 4xx answers (status code and text)
    statuses: dict[int, int] = field(default_factory=dict)  #: every status answered
    bad_5xx: list[str] = field(default_factory=list)  #: 5xx other than 503 with Retry-After
    retries: int = 0
    _turn: int = 0

    def submit(self, duration_s: float, deadline_s: float = 120.0) -> str | None:
        """One job; its id once accepted (None if refused or the deadline passed)."""
        ikey = uuid.uuid4().hex
        body = {
            "entrypoint": job_argv(duration_s),
            "env": {"FAULTS_MARKER_DIR": str(self.marker_dir)},
            "max_attempts": self.max_attempts,
            "retry_on": ["failed", "node_lost"],
            "retry_backoff_s": 0,
            "name": f"faults-{ikey[:8]}",
        }
        give_up = time.monotonic() + deadline_s
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": ikey}
        while time.monotonic() < give_up:
            url = self.urls[self._turn % len(self.urls)]
            try:
                resp = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=10)
            except httpx.HTTPError:
                self._turn += 1  # the next replica (or the same, restarted)
                self.retries += 1
                time.sleep(0.05)
                continue
            self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
            if resp.status_code in (200, 201):
                job_id = str(resp.json()["id"])
                self.accepted[ikey] = job_id
                return job_id
            if resp.status_code >= 500:
                if not (resp.status_code == 503 and "retry-after" in resp.headers):
                    self.bad_5xx.append(f"{resp.status_code} {resp.text[:200]}")
                self.retries += 1
                time.sleep(0.1)
                continue
            self.refused.append(f"{resp.status_code} {resp.text[:200]}")
            return None
        return None


# ---- results ------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the results table."""

    scenario: str
    db: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Outcome:
    """What a scenario run measured: table lines and free-form observations."""

    scenario: str
    db: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(
        self, figure: str, value: Any, target: str = "", met: bool | None = None, note: str = ""
    ) -> None:
        self.figures.append(Figure(self.scenario, self.db, figure, str(value), target, met, note))


def dist(values: list[float], unit: str = "s", digits: int = 2) -> str:
    """``p50 / p99 / max`` of ``values`` (or ``–``)."""
    if not values:
        return "–"
    return (
        f"p50 {percentile(values, 50):.{digits}f} / p99 {percentile(values, 99):.{digits}f} /"
        f" max {max(values):.{digits}f} {unit}"
    )


@dataclass
class Pace:
    """Sleep helper for the bench's own load loops (never used to synchronise)."""

    stop: threading.Event = field(default_factory=threading.Event)

    def every(self, seconds: float) -> Iterator[None]:
        while not self.stop.is_set():
            yield None
            self.stop.wait(seconds)
