"""The server's own CPU per plain submit without uvicorn or a socket: the application
called in-process as uvicorn calls it, in one event loop (SQLite in a fresh data dir,
no dispatcher, the access log on, the commit in the loop's thread as in the server;
or with ``--database-url`` a fresh PostgreSQL database, as ``w3_submit.py`` makes it).

A diagnostic for A/B comparisons on a loaded machine: the loop thread's CPU time
(``time.thread_time``, user and system) over many short rounds, so that the minimum and
the lower quartile are not much moved by the other processes), and the whole process's
(``time.process_time``: the threads the submit hands work to too); on PostgreSQL also
the CPU of the database's backends (``/proc/<pid>/schedstat``, ns: a PostgreSQL on this
machine only); ``--calls`` counts the Python function calls per submit instead
(deterministic, cProfile).

    .venv/bin/python bench/submit_app_cpu.py [--rounds 40] [--submits 200] [--calls]
    .venv/bin/python bench/submit_app_cpu.py --database-url postgresql+psycopg://…/x --bench-db w3pg
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from typing import Any

from common import asgi_post, in_process_app, low_quartiles, machine_line
from w3_submit import BENCH_DB, fresh_database

WARMUP = 300
#: what ``Client.submit(ENTRYPOINT, scheduled_at=2099)`` sends (bench/w3_submit.py)
BODY = json.dumps(
    {
        "priority": "normal",
        "entrypoint": "python3 -c pass",
        "scheduled_at": "2099-01-01T00:00:00Z",
    }
).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--submits", type=int, default=200, help="per round")
    parser.add_argument("--calls", action="store_true", help="Python calls per submit")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in the data dir)")
    parser.add_argument("--bench-db", default=BENCH_DB, help="the scratch database's name")
    args = parser.parse_args()
    print(machine_line())
    with (
        fresh_database(args.database_url, args.bench_db) as url,
        in_process_app(url) as (app, key),
    ):
        submit = _submitter(app, f"Bearer {key}".encode())
        if args.calls:
            print(f"Python calls per submit: {asyncio.run(_calls(submit, 500)):.0f}")
        else:
            rounds = asyncio.run(_rounds(submit, args.rounds, args.submits, url))
            report(rounds, args.submits)


def report(rounds: list[tuple[float, ...]], submits: int) -> None:
    """Each round's (loop thread, process[, PostgreSQL backends]) CPU per submit in µs."""
    for i, what in enumerate(("loop thread", "process", "PostgreSQL backends'")):
        if i < len(rounds[0]):
            print(
                f"{what} CPU us per submit over {len(rounds)} x {submits}: "
                + low_quartiles([r[i] for r in rounds])
            )


def _backends(url: str | None) -> list[int]:
    """The pids of the client backends connected to ``url``'s database (PostgreSQL)."""
    if url is None:
        return []
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
    ) as admin:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s"
            " AND backend_type = 'client backend'",
            (parsed.database,),
        ).fetchall()
    return [int(pid) for (pid,) in found]


def _backend_ns(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue  # ended meanwhile
    return total


def _submitter(app: Any, authorization: bytes) -> Any:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"accept", b"*/*"),
        (b"connection", b"keep-alive"),
        (b"authorization", authorization),
        (b"content-type", b"application/json"),
    ]

    async def submit() -> None:
        status, answer = await asgi_post(app, "/v1/jobs", BODY, headers)
        if status != 201:
            raise RuntimeError(f"submit answered {status}: {answer!r}")

    return submit


async def _rounds(
    submit: Any, rounds: int, submits: int, url: str | None = None
) -> list[tuple[float, ...]]:
    for _ in range(WARMUP):
        await submit()
    pids = _backends(url)  # after the warm-up: the connections the submits use are open
    out: list[tuple[float, ...]] = []
    for _ in range(rounds):
        cpu, process, backend = time.thread_time(), time.process_time(), _backend_ns(pids)
        for _ in range(submits):
            await submit()
        loop_us = (time.thread_time() - cpu) / submits * 1e6
        process_us = (time.process_time() - process) / submits * 1e6
        backend_us = (_backend_ns(pids) - backend) / submits / 1e3
        out.append((loop_us, process_us, backend_us) if pids else (loop_us, process_us))
    return out


async def _calls(submit: Any, submits: int) -> float:
    for _ in range(WARMUP):
        await submit()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(submits):
        await submit()
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / submits  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
