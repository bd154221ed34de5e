"""SSE latency: from a job's state change to its arrival at a client of the event stream.

A server runs in a child process (this script with ``--serve``: the API including the
event stream router, a dispatcher with ``--slots`` slots, SQLite in a fresh directory or
``--database-url``). A client follows ``GET /v1/events/stream?kind=state`` while ``--jobs``
short jobs are submitted, and for every state event measures the time of receipt minus
the event's ``at`` (taken by the server when it wrote the transition; same machine, same
clock). Target: p99 <= 100 ms (the stream polls every 50 ms).

    .venv/bin/python bench/sse_latency.py [--jobs 200] [--slots 4]
    .venv/bin/python bench/sse_latency.py --database-url postgresql+psycopg://root@127.0.0.1:5432/x

With ``--database-url`` the server uses that database as is (use an empty one).
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from jobyard.sdk.stream import parse_sse

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def serve(port: int, data_dir: Path, database_url: str | None, slots: int) -> None:
    """The child: the app with the stream router (whether or not app.py includes it)."""
    import uvicorn

    from jobyard.api.app import create_app
    from jobyard.api.routes import stream
    from jobyard.settings import Settings

    try:
        from jobyard.wiring import build_services
    except ImportError:  # before the rename to Services (earlier still in jobyard.runtime)
        try:
            from jobyard.wiring import build_runtime as build_services  # type: ignore[attr-defined,no-redef]
        except ImportError:
            from jobyard.runtime import build_runtime as build_services  # type: ignore[attr-defined,no-redef]

    settings = Settings(data_dir=data_dir, database_url=database_url, slots=slots, port=port)
    services = build_services(settings)
    key = services.start()
    app = create_app(services)
    if not any(getattr(r, "path", None) == "/v1/events/stream" for r in app.routes):
        app.include_router(stream.router)
    print(json.dumps({"api_key": key}), flush=True)
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        services.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def follow(url: str, key: str, jobs: int, ready: threading.Event, out: list[float]) -> None:
    """Read state events until ``jobs`` jobs have ended; latencies (ms) go to ``out``."""
    ended = 0
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "GET", f"{url}/v1/events/stream", params={"kind": "state"}, headers=headers, timeout=60
    ) as resp:
        resp.raise_for_status()
        ready.set()
        for message in parse_sse(resp.iter_lines()):
            received = datetime.now(UTC)
            data = json.loads(message.data)
            at = datetime.fromisoformat(data["at"].replace("Z", "+00:00"))
            out.append((received - at).total_seconds() * 1000)
            ended += data.get("to_state") in TERMINAL
            if ended >= jobs:
                return


def measure(url: str, key: str, jobs: int) -> list[float]:
    latencies: list[float] = []
    ready = threading.Event()
    reader = threading.Thread(target=follow, args=(url, key, jobs, ready, latencies))
    reader.start()
    if not ready.wait(30):
        sys.exit("the event stream did not open")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(jobs):
            client.post("/v1/jobs", json={"entrypoint": "true"}).raise_for_status()
    reader.join(600)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--database-url")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]), args.database_url, args.slots)
        return
    with tempfile.TemporaryDirectory(prefix="jobyard-sse-") as home:
        port = _free_port()
        cmd = [sys.executable, __file__, "--serve", str(port), home, "--slots", str(args.slots)]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            try:
                assert proc.stdout is not None
                key = json.loads(proc.stdout.readline())["api_key"]
                url = f"http://127.0.0.1:{port}"
                _wait_healthy(url)
                started = time.monotonic()
                latencies = measure(url, key, args.jobs)
                took = time.monotonic() - started
            finally:
                proc.terminate()
                proc.wait(30)
    print(
        f"{len(latencies)} state events of {args.jobs} jobs in {took:.1f} s "
        f"({args.slots} slots, {'PostgreSQL' if args.database_url else 'SQLite'}): "
        f"latency p50 {percentile(latencies, 50):.1f} ms, p90 {percentile(latencies, 90):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms (target p99 <= 100)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    sys.exit("the server did not become healthy")


if __name__ == "__main__":
    main()
