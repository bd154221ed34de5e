"""Store outages against real ``jobyard serve`` processes: an attempt's outcome survives
its node's death when the end could not be written, and lease settings that would break
the fencing guarantee are refused at start."""

from __future__ import annotations

import sqlite3
import subprocess

import httpx
import pytest

from jobyard.storage.exitstatus import parse_exit_code
from tests.acceptance.serverproc import (
    ENDED,
    FAST_ENV,
    JOBYARD,
    PY,
    StartServer,
    _clean_env,
    _free_port,
    _submit_quiet,
)
from tests.conftest import wait_for

WAITS_FOR_GO = (
    "import os, sys, time\n"
    "while not os.path.exists('go'): time.sleep(0.02)\n"  # in its working directory
    "print('the job saw go', flush=True)\n"
    "sys.exit(3)"
)


def test_an_outcome_held_back_by_the_database_survives_the_death_of_its_node(
    db_url: str, start_server: StartServer
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a lock on the SQLite file holds the end back")
    first = start_server()
    ready = httpx.get(f"{first.url}/readyz", timeout=10).json()
    if not ready["details"].get("jobs_sandboxed"):
        pytest.skip("only the sandbox records exit statuses (bubblewrap's --json-status-fd)")
    job_id = _submit_quiet(first, PY, "-c", WAITS_FOR_GO)
    first.wait_status(job_id, {"running"})
    job_dir = first.home / "jobs" / job_id
    status = job_dir / "logs" / "attempt-1.exit"
    locker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the node cannot write the end
    try:
        (job_dir / "work" / "go").touch()
        wait_for(lambda: status.exists() and parse_exit_code(status.read_text()) == 3, 30)
        first.kill()  # dies with the end in memory
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    second = start_server()  # same home and node id: the restart reads the status
    job = second.wait_status(job_id, ENDED, timeout=30)
    assert (job["status"], job["exit_code"], job["error_type"]) == (
        "failed",
        3,
        "ENTRYPOINT_COMMAND_ERROR",
    )
    assert "the job saw go" in job["message"]
    assert job["attempt"] == 1


def test_serve_refuses_a_lease_shorter_than_the_outage_tolerance(db_url: str, tmp_path) -> None:
    home = tmp_path / "home"
    env = {**_clean_env(home), **FAST_ENV, "JOBYARD_LEASE_TTL_S": "20"}
    env.pop("JOBYARD_OUTAGE_TOLERANCE_S")  # the default, 35 s
    done = subprocess.run(
        [JOBYARD, "serve", "--port", str(_free_port()), "--database-url", db_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "jobyard: cannot start: lease_ttl_s (20 s) must be at least outage_tolerance_s (35 s)"
        in (done.stderr)
    )
