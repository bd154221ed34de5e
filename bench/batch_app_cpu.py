"""The server's own CPU per job of ``POST /v1/jobs/batch`` without uvicorn or a socket:
the application called in-process as uvicorn calls it, in one event loop (SQLite in a
fresh data dir, no dispatcher, the access log on, start-up objects frozen out of the
collector as in ``jobyard serve``), with the body ``batch_submit.py``
sends (1,000 plain jobs scheduled for 2099). Prints the process's CPU per job (every
thread: the thread pool's service work and the writer thread's insert included) over
short rounds, min, lower quartile and median; ``--profile FILE`` writes a cProfile of
the rounds instead.

    .venv/bin/python bench/batch_app_cpu.py [--rounds 15] [--size 1000] [--keys]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine_line

from jobyard import serverlog
from jobyard.api.app import create_app
from jobyard.server import start_services
from jobyard.settings import Settings

LATER = "2099-01-01T00:00:00Z"


def body(size: int, keys: bool, round_no: int) -> bytes:
    """The request's JSON: ``size`` plain jobs, each with its own submission_id if ``keys``."""
    jobs: list[dict[str, Any]] = [
        {"entrypoint": "python3 -c pass", "scheduled_at": LATER} for _ in range(size)
    ]
    if keys:
        for i, job in enumerate(jobs):
            job["submission_id"] = f"r{round_no}-{i}"
    return json.dumps({"jobs": jobs}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--keys", action="store_true", help="each job with a submission_id")
    parser.add_argument("--profile", help="write a cProfile of the rounds to this file")
    args = parser.parse_args()
    print(machine_line())
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    with (home / "server.log").open("w") as log:
        serverlog.configure("info", "text")
        logging.getLogger().handlers[0].setStream(log)  # type: ignore[attr-defined]
        services, key = start_services(Settings(data_dir=home, run_dispatcher=False))
        try:
            app = create_app(services)
            gc.collect()
            gc.freeze()  # as ``jobyard serve`` does after start-up
            post = _poster(app, f"Bearer {key}".encode())
            bodies = [body(args.size, args.keys, n) for n in range(args.rounds + 2)]
            per_job = asyncio.run(_rounds(post, bodies, args.size, args.profile))
        finally:
            services.close()
    r = sorted(per_job)
    print(
        f"process CPU us per job over {len(r)} batches of {args.size}: min {r[0]:.1f}, "
        f"p25 {r[len(r) // 4]:.1f}, median {statistics.median(r):.1f}"
    )


def _poster(app: Any, authorization: bytes) -> Any:
    async def post(payload: bytes) -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": "/v1/jobs/batch",
            "raw_path": b"/v1/jobs/batch",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"authorization", authorization),
                (b"content-length", str(len(payload)).encode()),
                (b"content-type", b"application/json"),
            ],
            "state": {},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"the batch answered {sent}")
        return b"".join(m.get("body", b"") for m in sent[1:])

    return post


async def _rounds(post: Any, bodies: list[bytes], size: int, profile: str | None) -> list[float]:
    for payload in bodies[:2]:  # warm-up
        await post(payload)
    prof = cProfile.Profile() if profile else None
    out = []
    for payload in bodies[2:]:
        if prof:
            prof.enable()
        cpu = time.process_time()
        answer = await post(payload)
        out.append((time.process_time() - cpu) / size * 1e6)
        if prof:
            prof.disable()
        if json.loads(answer)["failed"]:
            raise RuntimeError("a job of the batch failed")
    if prof and profile:
        prof.dump_stats(profile)
    return out


if __name__ == "__main__":
    main()
