"""Scenario 4: the data directory fills up (a small tmpfs, so the real disk is never
touched; needs root). A job writes its log continuously; a filler file takes the rest of
the space; the scenario records what submits, reads, ``/healthz`` and ``/readyz`` answer
and how the job ends, then deletes the filler and checks that the server recovers and
that SQLite's ``PRAGMA integrity_check`` is ``ok``."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bench.faults.common import (
    ENDED,
    Outcome,
    ServeProc,
    job_python,
    kill_processes_under,
    on_cleanup,
    temp_dir,
    wait_until,
)
from bench.faults.kill9 import integrity

TMPFS_SIZE = "8m"
#: a job that writes ≈ 40 KB/s to its log for up to ``argv[1]`` seconds
WRITER = """\
import sys, time
end = time.time() + float(sys.argv[1]); n = 0
while time.time() < end:
    n += 1
    print("line %d " % n + "x" * 2000, flush=True)
    time.sleep(0.05)
print("writer done", flush=True)
"""


def why_not() -> str | None:
    """None when this process can mount a tmpfs, else the reason."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if not Path("/proc/filesystems").read_text().count("tmpfs"):
        return "no tmpfs in this kernel"
    return None


def mount_tmpfs(path: Path, size: str = TMPFS_SIZE) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 16 or 1]


@dataclass
class Seen:
    """Answers of one kind of request: status (and error code) → count, with one sample."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)

    def add(self, resp: httpx.Response | None, error: str = "") -> str:
        if resp is None:
            label = f"no answer ({error})"
            text = error
        else:
            code = ""
            try:
                code = str(resp.json().get("code") or "")
            except Exception:
                code = ""
            retry = " +Retry-After" if "retry-after" in resp.headers else ""
            label = f"{resp.status_code}{' ' + code if code else ''}{retry}"
            text = resp.text[:300]
        self.counts[label] = self.counts.get(label, 0) + 1
        self.samples.setdefault(label, text)
        return label

    def summary(self) -> str:
        return ", ".join(f"{k} ×{v}" for k, v in sorted(self.counts.items())) or "–"


def _request(
    http: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response | None, str]:
    try:
        return http.request(method, url, **kwargs), ""
    except httpx.HTTPError as exc:
        return None, type(exc).__name__


def _submit(http: httpx.Client, url: str, seconds: float, keyed: bool) -> httpx.Response | None:
    body = {"entrypoint": [job_python(), "-c", WRITER, str(seconds)]}
    headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
    resp, _ = _request(http, "POST", f"{url}/v1/jobs", json=body, headers=headers)
    return resp


def run_diskfull(full_s: float = 30.0, recover_s: float = 60.0) -> Outcome:
    """Run the scenario; ``full_s`` is how long the disk stays full."""
    out = Outcome("disk full (8 MB tmpfs data dir)", "sqlite")
    reason = why_not()
    if reason:
        out.add("skipped", reason)
        return out
    root, remove = temp_dir("jobyard-faults-disk-")
    data = root / "data"
    mount_tmpfs(data)
    unmount = on_cleanup(f"umount {data}", lambda: umount(data))
    server = ServeProc(data)
    http = httpx.Client(timeout=15)
    try:
        server.start()
        http.headers["Authorization"] = f"Bearer {server.api_key()}"
        url = server.url
        first = _submit(http, url, full_s + recover_s + 30, keyed=False)
        assert first is not None and first.status_code == 201, first
        writer_id = first.json()["id"]
        wait_until(lambda: _status(http, url, writer_id) == "running", 30)
        filler = data / "filler"
        filled = fill(filler)
        full_at = time.monotonic()
        submits, reads, health, ready = Seen(), Seen(), Seen(), Seen()
        writer_states: list[str] = []
        while time.monotonic() - full_at < full_s:
            submits.add(_submit(http, url, 1, keyed=True))
            submits.add(_submit(http, url, 1, keyed=False))
            reads.add(*_request(http, "GET", f"{url}/v1/jobs/{writer_id}"))
            health.add(*_request(http, "GET", f"{url}/healthz"))
            ready.add(*_request(http, "GET", f"{url}/readyz"))
            state = _status(http, url, writer_id) or "?"
            if not writer_states or writer_states[-1] != state:
                writer_states.append(state)
            time.sleep(0.5)  # pacing of the probes
        alive_while_full = server.running
        writer_full = _job(http, url, writer_id)
        filler.unlink()
        freed_at = time.monotonic()
        recovered_s = _first_201(http, url, freed_at, recover_s)

        def ready_again() -> bool:  # its write probe's answer is kept for up to 1 s
            resp, _ = _request(http, "GET", f"{url}/readyz")
            return resp is not None and resp.status_code == 200

        try:
            wait_until(ready_again, recover_s, 0.2)
        except TimeoutError:
            pass
        ready_after = Seen()
        ready_after.add(*_request(http, "GET", f"{url}/readyz"))
        try:
            wait_until(lambda: _status(http, url, writer_id) in ENDED, recover_s, 0.2)
        except TimeoutError:
            pass
        writer_end = _job(http, url, writer_id)
        check = _after_job(http, url)
        alive_after = server.running
        server.stop()
        tracebacks = server.log_path.read_text(errors="replace").count("Traceback")
        verdict = integrity(data / "jobyard.db")
        # retryable status, and a message that names the cause (the disk or its space)
        clear = all(
            label.startswith(("507", "503"))
            and any(w in submits.samples[label].lower() for w in ("disk", "space", "full"))
            for label in submits.counts
        )
        out.add("filler written until ENOSPC", f"{filled / 1e6:.1f} MB; full for {full_s:.0f} s")
        out.add("submits while full", submits.summary(), "507 or 503 with a clear message", clear)
        for label, sample in sorted(submits.samples.items()):
            out.notes.append(f"submit while full → {label}: {sample}")
        out.add(
            "GET /v1/jobs/{id} while full", reads.summary(), "200", set(reads.counts) == {"200"}
        )
        out.add("/healthz while full", health.summary(), "200", set(health.counts) == {"200"})
        out.add(
            "/readyz while full",
            ready.summary(),
            "503 (issue 11 §2)",
            all(c.startswith("503") for c in ready.counts),
        )
        out.add("server process alive while full / after", f"{alive_while_full} / {alive_after}")
        out.add("writing job's states while full", " → ".join(writer_states))
        out.add(
            "writing job at the end of the full period",
            _describe(writer_full),
            "ended with a clear error",
            writer_full is not None and writer_full.get("status") in ENDED,
        )
        out.add("writing job's final state after space returned", _describe(writer_end))
        out.add(
            "space freed → first submit 201",
            f"{recovered_s:.2f} s" if recovered_s is not None else f"none within {recover_s} s",
            "recovers",
            recovered_s is not None,
        )
        out.add(
            "/readyz after space returned",
            ready_after.summary(),
            "200",
            "200" in ready_after.counts,
        )
        out.add("a job submitted after recovery", check, "succeeded", check == "succeeded")
        out.add("PRAGMA integrity_check", verdict, "ok", verdict == "ok")
        out.add("tracebacks in the server log", tracebacks)
        out.data.update(
            submits=submits.counts,
            submit_samples=submits.samples,
            reads=reads.counts,
            healthz=health.counts,
            readyz=ready.counts,
            readyz_after=ready_after.counts,
            alive_while_full=alive_while_full,
            alive_after=alive_after,
            writer_full=writer_full,
            writer_end=writer_end,
            recovered_s=recovered_s,
            after_job=check,
            integrity=verdict,
        )
        return out
    finally:
        http.close()
        server.close()
        kill_processes_under(root)
        unmount()
        remove()


def _status(http: httpx.Client, url: str, job_id: str) -> str | None:
    job = _job(http, url, job_id)
    return None if job is None else str(job.get("status"))


def _job(http: httpx.Client, url: str, job_id: str) -> dict[str, Any] | None:
    resp, _ = _request(http, "GET", f"{url}/v1/jobs/{job_id}")
    if resp is None or resp.status_code != 200:
        return None
    job: dict[str, Any] = resp.json()
    return job


def _describe(job: dict[str, Any] | None) -> str:
    if job is None:
        return "unreadable"
    message = (job.get("message") or "").replace("\n", " ⏎ ")[:160]
    return (
        f"{job.get('status')} (error_type {job.get('error_type')}, exit {job.get('exit_code')},"
        f" attempt {job.get('attempt')}): {message}"
    )


def _first_201(http: httpx.Client, url: str, since: float, limit_s: float) -> float | None:
    def ok() -> bool:
        resp = _submit(http, url, 0.1, keyed=True)
        return resp is not None and resp.status_code == 201

    try:
        wait_until(ok, limit_s, 0.1)
    except TimeoutError:
        return None
    return time.monotonic() - since


def _after_job(http: httpx.Client, url: str) -> str:
    resp = _submit(http, url, 0.2, keyed=False)
    if resp is None or resp.status_code != 201:
        return f"submit answered {resp.status_code if resp is not None else 'nothing'}"
    job_id = resp.json()["id"]
    try:
        wait_until(lambda: _status(http, url, job_id) in ENDED, 30, 0.1)
    except TimeoutError:
        return f"not ended in 30 s ({_status(http, url, job_id)})"
    return str(_status(http, url, job_id))
