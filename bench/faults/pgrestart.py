"""Scenario 3: a private PostgreSQL server (``tests/support/private_pg.py``) stops and
starts again under a steady submit and read load, once per outage length. Counted: 5xx
answers other than 503 with ``Retry-After``, accepted jobs lost, and whether the jobs
that were running when the database went away survive (end ``succeeded`` in the same
attempt)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from functools import partial

import httpx
from bench.faults.common import (
    Api,
    Outcome,
    ServeProc,
    Submitter,
    dist,
    kill_processes_under,
    on_cleanup,
    temp_dir,
    wait_until,
)
from bench.faults.kill9 import Load, _ended_job, analyse
from tests.support import private_pg


@dataclass
class Reader:
    """Reads the job list and single jobs at about ``rate`` per second; counts answers."""

    url: str
    key: str
    submitter: Submitter
    rate: float = 10.0
    statuses: dict[int, int] = field(default_factory=dict)
    bad_5xx: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="faults-reader", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        rng = random.Random(3)
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=10) as http:
            while not self.stop.is_set():
                ids = list(self.submitter.accepted.values())
                path = f"/v1/jobs/{rng.choice(ids)}" if ids and rng.random() < 0.5 else "/v1/jobs"
                try:
                    resp = http.get(
                        self.url + path, params={"limit": 20} if path == "/v1/jobs" else None
                    )
                except httpx.HTTPError:
                    self.statuses[0] = self.statuses.get(0, 0) + 1
                else:
                    self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
                    if resp.status_code >= 500 and not (
                        resp.status_code == 503 and "retry-after" in resp.headers
                    ):
                        self.bad_5xx.append(f"GET {path} {resp.status_code} {resp.text[:200]}")
                self.stop.wait(1 / self.rate)

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)


def _running(api: Api, at_least: int) -> dict[str, int] | None:
    """Running job → its attempt, once at least ``at_least`` jobs run."""
    try:
        running = {j["id"]: int(j["attempt"]) for j in api.jobs(status="running")}
    except Exception:
        return None
    return running if len(running) >= at_least else None


def run_pgrestart(outages: list[float], *, seed: int = 13, slots: int = 4) -> Outcome:
    """One round per outage length (seconds the database is down)."""
    out = Outcome("PostgreSQL restart (private server)", "postgresql")
    reason = private_pg.unavailable()
    if reason:
        out.add("skipped", reason)
        return out
    rng = random.Random(seed)
    root, remove = temp_dir("jobyard-faults-pgrestart-")
    marker_dir = root / "markers"
    marker_dir.mkdir()
    pg = private_pg.PrivatePostgres()
    close_pg = on_cleanup(f"private postgres {pg.root}", pg.close)
    server = ServeProc(root / "home", database_url=pg.create_database("jobyard"), slots=slots)
    load: Load | None = None
    reader: Reader | None = None
    try:
        server.start()
        key = server.api_key()
        api = Api([server.url], key)
        sub = Submitter([server.url], key, marker_dir, max_attempts=1)
        longest = max(outages)
        durations = (longest + 5, longest + 12)
        # submits at 80 % of what the slots can run, so the queue stays short
        load = Load(sub, 0.8 * slots / (longest + 8.5), durations, rng)
        load.start()
        reader = Reader(server.url, key, sub)
        reader.start()
        back_s: list[float] = []
        for outage in outages:
            running = wait_until(partial(_running, api, 2), 90, 0.2)
            pg.stop()  # fast shutdown: every session is cut
            time.sleep(outage)  # the outage itself
            pg.start()
            started = time.monotonic()
            wait_until(lambda: _ready(server.url), 120, 0.05)
            back_s.append(time.monotonic() - started)
            survived, died = 0, []
            for job_id, attempt in running.items():
                job = wait_until(partial(_ended_job, api, job_id), outage + 90, 0.2)
                if job["status"] == "succeeded" and int(job["attempt"]) == attempt:
                    survived += 1
                else:
                    died.append(f"{job['status']} {job.get('error_type')}: {job.get('message')}")
            out.add(
                f"{outage:g} s outage: running jobs that survived",
                f"{survived} of {len(running)}",
                "all",
                survived == len(running),
            )
            for text in sorted(set(died)):
                out.notes.append(f"{outage:g} s outage, a running job ended: {text[:240]}")
        load.finish()
        reader.finish()
        analysis = analyse(api, list(sub.accepted.values()), marker_dir, 3 * longest + 120)
        api.close()
        out.add("database back → /readyz 200", dist(back_s))
        out.add("jobs accepted (2xx)", len(sub.accepted))
        out.add("accepted jobs lost", len(analysis.lost), "0", not analysis.lost)
        out.add("accepted jobs not ended", len(analysis.unfinished), "0", not analysis.unfinished)
        bad = sub.bad_5xx + reader.bad_5xx
        out.add(
            "5xx other than 503 + Retry-After (submits / reads)",
            f"{len(sub.bad_5xx)} / {len(reader.bad_5xx)}",
            "0",
            not bad,
        )
        out.add("submit answers", _counts(sub.statuses))
        out.add("read answers (0: no answer)", _counts(reader.statuses))
        out.add(
            "final statuses", ", ".join(f"{k} {v}" for k, v in sorted(analysis.statuses.items()))
        )
        out.add(
            "jobs with two processes at the same time",
            len(analysis.overlaps),
            "0",
            not analysis.overlaps,
        )
        out.notes.extend(f"bad 5xx: {b}" for b in sorted(set(bad))[:10])
        server.stop()
        return out
    finally:
        if load is not None:
            load.stop.set()
        if reader is not None:
            reader.stop.set()
        server.close()
        kill_processes_under(root)
        close_pg()
        remove()


def _counts(counts: dict[int, int]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
