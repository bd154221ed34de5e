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
import time
from typing import Any

from common import asgi_post, in_process_app, low_quartiles, machine_line

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
    with in_process_app() as (app, key):
        gc.collect()
        gc.freeze()  # as ``jobyard serve`` does after start-up
        post = _poster(app, f"Bearer {key}".encode())
        bodies = [body(args.size, args.keys, n) for n in range(args.rounds + 2)]
        per_job = asyncio.run(_rounds(post, bodies, args.size, args.profile))
    print(
        f"process CPU us per job over {len(per_job)} batches of {args.size}: "
        + low_quartiles(per_job, 1)
    )


def _poster(app: Any, authorization: bytes) -> Any:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"authorization", authorization),
        (b"content-type", b"application/json"),
    ]

    async def post(payload: bytes) -> bytes:
        status, answer = await asgi_post(app, "/v1/jobs/batch", payload, headers)
        if status != 200:
            raise RuntimeError(f"the batch answered {status}: {answer[:300]!r}")
        return answer

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
