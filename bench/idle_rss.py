"""Idle memory: RSS, PSS and USS of ``jobyard serve`` and all its children, in MB.

Starts a server on SQLite in a fresh data dir, waits until it is healthy, lets it idle
and reads psutil's ``memory_full_info()`` (1: idle after start). Then it sends one
authenticated request to every router (``api/routes/*``, ``api/compat/*``, plus
``/openapi.json``, ``/metrics`` and ``/healthz``), lets it idle again and reads the
memory once more (2: idle after one request of each router). The job the requests need
is scheduled for 2099 and cancelled, so nothing runs. Target: <= 80 MB RSS after (2).
Then it opens the dashboard's sign-in page (the dashboard's modules load on its first
page) and reads it a third time (3).

    .venv/bin/python bench/idle_rss.py [--idle-s 5] [--slots 2]
"""

from __future__ import annotations

import argparse
import time

import httpx
import psutil
from common import Server, machine_line, running_server

MB = 1024 * 1024
TARGET_MB = 80

Row = tuple[str, float, float | None, float | None]


def row(proc: psutil.Process) -> Row:
    """(label, rss, pss, uss) in MB; pss/uss are None where the platform lacks them."""
    with proc.oneshot():
        label = f"{proc.pid} {proc.name()}"
        try:
            full = proc.memory_full_info()
            pss = getattr(full, "pss", None)
            uss = getattr(full, "uss", None)
            return (
                label,
                full.rss / MB,
                pss / MB if pss is not None else None,
                uss / MB if uss is not None else None,
            )
        except psutil.AccessDenied:
            return label, proc.memory_info().rss / MB, None, None


def measure(pid: int) -> list[Row]:
    """One row per process: the server and all its children."""
    root = psutil.Process(pid)
    return [row(p) for p in [root, *root.children(recursive=True)]]


def fmt(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else "       –"


def total(values: list[float | None]) -> float | None:
    return None if None in values else sum(v for v in values if v is not None)


def report(title: str, rows: list[Row]) -> None:
    print(title)
    print(f"{'process':<28}{'RSS MB':>8}{'PSS MB':>8}{'USS MB':>8}")
    for label, rss, pss, uss in rows:
        print(f"{label:<28}{rss:8.1f}{fmt(pss)}{fmt(uss)}")
    rss_all = sum(r[1] for r in rows)
    pss_all, uss_all = total([r[2] for r in rows]), total([r[3] for r in rows])
    print(f"{'total':<28}{rss_all:8.1f}{fmt(pss_all)}{fmt(uss_all)}  (target <= {TARGET_MB} RSS)")


def touch_every_router(server: Server) -> list[tuple[str, int]]:
    """One harmless request per router module; returns (request, status) of each."""
    done: list[tuple[str, int]] = []
    with server.client() as client:

        def send(method: str, path: str, **kwargs: object) -> httpx.Response:
            resp = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            done.append((f"{method} {path}", resp.status_code))
            return resp

        job = send(
            "POST",
            "/v1/jobs",  # routes/jobs.py: a job that would run in 2099
            json={"entrypoint": "python3 -c pass", "scheduled_at": "2099-01-01T00:00:00Z"},
        ).json()
        job_id = str(job["id"])
        tenant = str(job.get("tenant_id") or "default")
        send("GET", "/healthz")  # routes/health.py
        send("GET", "/readyz")
        send("GET", "/v1/jobs")
        send("GET", f"/v1/jobs/{job_id}")
        send("GET", f"/v1/jobs/{job_id}/results")  # routes/results.py
        send("GET", f"/v1/jobs/{job_id}/notifications")  # routes/notifications.py
        send("GET", "/v1/models")  # routes/models.py
        send("GET", "/v1/environments")  # routes/environments.py
        send("GET", "/v1/folders")  # routes/folders.py
        send("GET", "/v1/definitions")  # routes/definitions.py
        send("GET", "/v1/monitoring/overdue-models")  # routes/monitoring.py
        send("GET", "/v1/system/status")  # routes/system.py
        send("GET", "/v1/keys")  # routes/admin.py
        send("GET", "/v1/audit")
        send("POST", f"/v1/jobs/{job_id}/cancel")
        send("GET", f"/v1/jobs/{job_id}/events/stream")  # routes/stream.py: ends, job ended
        send("GET", "/api/v1/jobs")  # compat/prediction.py
        send("GET", "/api/jobmanager/v3/jobs")  # compat/insights_hub.py
        send("GET", "/api/history/jobs")  # compat/history.py
        send("GET", f"/api/{tenant}/execution/system/status")  # compat/mindzie.py
        send("GET", "/api/version")  # compat/ray.py
        send("GET", "/api/jobs/")
        send("GET", "/metrics")
        send("GET", "/openapi.json")
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle time before measuring")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()
    print(machine_line())
    with running_server(slots=args.slots) as server:
        time.sleep(args.idle_s)
        started = measure(server.pid)
        requests = touch_every_router(server)
        time.sleep(args.idle_s)
        used = measure(server.pid)
        with server.client() as client:  # the dashboard (web/), loaded on its first page
            page = client.get("/ui/sign-in")
        time.sleep(args.idle_s)
        dashboard = measure(server.pid)
    print(f"{args.slots} slots, SQLite, {args.idle_s:g} s idle before each measurement")
    report("1. idle after start:", started)
    report(f"2. idle after one request of each router ({len(requests)} requests):", used)
    report(
        f"3. idle after the dashboard's first page too (GET /ui/sign-in: {page.status_code}):",
        dashboard,
    )
    failed = [f"{r} -> {code}" for r, code in requests if code >= 400]
    print("requests that failed: " + ("; ".join(failed) if failed else "none"))


if __name__ == "__main__":
    main()
