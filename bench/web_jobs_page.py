"""The dashboard's jobs page (``GET /ui/jobs``) over a tenant with 100,000 jobs.

A fresh database (SQLite, or PostgreSQL with ``--database-url``) is filled like
``scale.py`` (bulk inserts, then a realistic mix of states), a real ``jobyard serve``
(API only) runs on it, the script signs in through the sign-in form like a browser and
times the whole page (HTML of 50 rows, counts by status) per filter: the first page and
a page after a cursor deep in the list, ``--pages`` times each. The client is on the same
machine (loopback), so the figure is the server's time plus a few hundred microseconds.

    .venv/bin/python bench/web_jobs_page.py [--jobs 100000] [--pages 50]
    .venv/bin/python bench/web_jobs_page.py --database-url postgresql+psycopg://root@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time

import httpx
from common import load_average, machine_line, running_server
from scale import add_tenants, analyze, fill, fmt_ms, mix_states, scratch_database
from scale import without_count_triggers as no_triggers

from jobyard.store import migrate
from jobyard.store.database import Database

FILTERS: list[dict[str, str]] = [
    {},
    {"status": "running"},
    {"status": "failed"},
    {"priority": "high"},
    {"job_type": "type-07"},
    {"submitted_by": "user3"},
    {"q": "job 4242"},  # text search on the name: a scan of the tenant's jobs
]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(http: httpx.Client, key: str) -> None:
    form = http.get("/ui/sign-in")
    match = CSRF.search(form.text)
    assert match, form.text
    resp = http.post("/ui/sign-in", data={"api_key": key, "csrf": match.group(1)})
    assert resp.status_code == 303, resp.text


def time_page(http: httpx.Client, params: dict[str, str], n: int) -> list[float]:
    http.get("/ui/jobs", params=params).raise_for_status()  # warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.get("/ui/jobs", params=params).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def deep_cursor(http: httpx.Client, params: dict[str, str]) -> str | None:
    """The cursor of a page about 1,500 jobs down the list (three pages of 500)."""
    cursor: str | None = None
    for _ in range(3):
        page = http.get("/ui/jobs", params={**params, "limit": "500", **_c(cursor)})
        found = re.search(r'href="\?[^"]*cursor=([^"&]+)[^"]*" rel="next"', page.text)
        if not found:
            return cursor
        cursor = found.group(1)
    return cursor


def _c(cursor: str | None) -> dict[str, str]:
    return {"cursor": cursor} if cursor else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url", help="PostgreSQL server (its database name is ignored)")
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--pages", type=int, default=50, help="requests per case")
    args = ap.parse_args()
    print(machine_line())
    with scratch_database(args.database_url) as url:
        db = Database(url)
        try:
            migrate.upgrade(db)
            add_tenants(db)
            with no_triggers(db):
                # scale.py puts every tenth job in another tenant: fill enough for
                # ``--jobs`` in the server's tenant
                took = fill(db, 0, args.jobs * 10 // 9, random.Random(9))
                took += mix_states(db)
            analyze(db)
            print(f"filled {args.jobs:,} jobs of the tenant in {took:.0f} s", flush=True)
        finally:
            db.dispose()
        env = {"JOBYARD_RUN_DISPATCHER": "false"}
        with (
            running_server(slots=1, database_url=url, extra_env=env) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            sign_in(http, server.api_key)
            for flt in FILTERS:
                label = "&".join(f"{k}={v}" for k, v in flt.items()) or "(no filter)"
                print(f"  {label}: {fmt_ms(time_page(http, flt, args.pages))}", flush=True)
                cursor = deep_cursor(http, flt)
                if cursor:
                    times = time_page(http, {**flt, "cursor": cursor}, args.pages)
                    print(f"  {label} +cursor: {fmt_ms(times)}", flush=True)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
