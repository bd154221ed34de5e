"""The server keeps out of memory what it does not use: Alembic when the schema is at
head (and, through a forked child, even when it migrates), the CLI (typer reads
``jobyard serve``'s options in a forked child),
SQLAlchemy's PostgreSQL dialect on SQLite, a second build of every route."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import APIRouter

from jobyard.server import start_services
from jobyard.settings import Settings
from jobyard.store import migrate
from jobyard.store.database import Database
from tests.conftest import wait_for

START = """
import json, sys
from pathlib import Path
from jobyard.api.app import create_app
from jobyard.server import start_services
from jobyard.settings import Settings
from jobyard.store import migrate

services, key = start_services(Settings.from_env(data_dir=Path(sys.argv[1]), slots=1))
try:
    create_app(services)
    print(json.dumps({
        "alembic": sorted(m for m in sys.modules if m.split(".")[0] == "alembic"),
        "revision": migrate.current_revision(services.db),
        "new_key": key is not None,
    }))
finally:
    services.close()
"""

BROKEN = """
import json, sys
from jobyard.server import start_services
from jobyard.settings import Settings
from jobyard.store import migrate
from jobyard.store.database import Database

db = Database(sys.argv[1])
try:
    migrate.upgrade(db, isolated=True)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"error": error, "alembic": "alembic" in sys.modules}))
"""

SERVE_COMMAND = """
import json, sys
from jobyard.cli.main import build_app
build_app(client_commands=False)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("httpx", "rich", "alembic")
                        or m.startswith("jobyard.cli.")
                        and m not in ("jobyard.cli.main", "jobyard.cli.command", "jobyard.cli.helptext",
                                      "jobyard.cli.serve", "jobyard.cli.launch"))))
"""


#: ``jobyard serve`` as its script runs it (``main()``), which writes to ``argv[1]`` on
#: SIGUSR1 the names of the modules it holds (not those refused with ``None``), its pid
#: and whether its code objects have column tables (``-X no_debug_ranges``)
SERVE_AND_TELL = """
import json, os, signal, sys
path = sys.argv[1]
def tell(*_):
    modules = sorted(m for m, module in sys.modules.items() if module is not None)
    code = sys.modules["jobyard.server"].serve.__code__
    columns = any(column is not None for _, _, column, _ in code.co_positions())
    with open(path + ".part", "w") as f:
        json.dump({"modules": modules, "pid": os.getpid(), "columns": columns}, f)
    os.replace(path + ".part", path)
signal.signal(signal.SIGUSR1, tell)
sys.argv = ["jobyard", *sys.argv[2:]]
from jobyard.cli.main import main
main()
"""

#: modules a server on SQLite without cron schedules has no use for, whatever it answered
#: (``lean_imports``: pydantic's v1, uvicorn's command line and reloaders; fsspec until
#: a file is stored or read)
NOT_LOADED = (
    "sqlalchemy.dialects.postgresql", "psycopg", "alembic", "typer", "rich", "croniter",
    "pydantic.v1", "uvicorn.main", "click", "watchfiles", "multiprocessing", "fsspec",
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _touch_every_router(url: str, key: str) -> dict[str, int]:
    """One request to a route of each router (as ``bench/idle_rss.py``); their statuses."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        job = client.post(
            "/v1/jobs", json={"entrypoint": "true", "scheduled_at": "2099-01-01T00:00:00Z"}
        ).json()
        paths = [
            "/healthz", "/readyz", "/v1/jobs", f"/v1/jobs/{job['id']}",
            f"/v1/jobs/{job['id']}/results", f"/v1/jobs/{job['id']}/notifications",
            "/v1/models", "/v1/environments", "/v1/folders", "/v1/definitions",
            "/v1/monitoring/overdue-models", "/v1/system/status", "/v1/keys", "/api/v1/jobs",
            "/api/jobmanager/v3/jobs", "/api/history/jobs",
            "/api/default/execution/system/status", "/api/version", "/api/jobs/",
            "/metrics", "/openapi.json", "/ui/sign-in",
        ]  # fmt: skip
        answers = {path: client.get(path).status_code for path in paths}
        answers["cancel"] = client.post(f"/v1/jobs/{job['id']}/cancel").status_code
        answers["events"] = client.get(f"/v1/jobs/{job['id']}/events/stream").status_code
    return answers


def _run(code: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_head_revision_without_alembic_is_alembics_head() -> None:
    assert migrate.head_revision() is not None
    assert migrate.head_revision() == migrate.alembic_head_revision()


def test_head_revision_is_unknown_with_two_heads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, parent in [("a", None), ("b", "a"), ("c", "a")]:
        down = repr(parent)
        (tmp_path / f"{name}.py").write_text(f'revision: str = "{name}"\ndown_revision = {down}\n')
    monkeypatch.setattr(migrate, "VERSIONS_DIR", tmp_path)
    assert migrate.head_revision() is None  # then upgrade() asks Alembic
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    assert migrate.head_revision() == "d"


def test_server_never_imports_alembic(tmp_path: Path) -> None:
    first = _run(START, str(tmp_path))  # a fresh database: migrated in a forked child
    assert first == {"alembic": [], "revision": migrate.head_revision(), "new_key": True}
    again = _run(START, str(tmp_path))  # already at head: nothing to migrate
    assert again == {"alembic": [], "revision": migrate.head_revision(), "new_key": False}


def test_a_failed_migration_in_the_child_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    db = Database(url)
    try:
        migrate.upgrade(db)
        with db.engine.begin() as conn:  # a revision this code does not know
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'unknown'"))
    finally:
        db.dispose()
    result = _run(BROKEN, url)
    assert result == {"error": result["error"], "alembic": False}
    assert str(result["error"]).startswith("RuntimeError: the database migration failed")


def test_serve_command_leaves_out_the_client_commands() -> None:
    assert _run(SERVE_COMMAND) == []


def test_a_server_on_sqlite_leaves_out_what_it_does_not_use(tmp_path: Path) -> None:
    home, told = tmp_path / "home", tmp_path / "modules.json"
    port = _free_port()
    server = _serve([sys.executable, "-c", SERVE_AND_TELL, str(told)], port, home)
    try:
        url = f"http://127.0.0.1:{port}"
        key = json.loads((home / "credentials.json").read_text())["api_key"]
        answers = _touch_every_router(url, key)
        server.send_signal(signal.SIGUSR1)
        state = wait_for(lambda: told.exists() and json.loads(told.read_text()), timeout=10)
    finally:
        server.terminate()
        server.wait(30)
    assert set(answers.values()) == {200, 202}, answers
    modules = state["modules"]
    assert "jobyard.server" in modules
    assert [m for m in NOT_LOADED if m in modules] == []
    # it ran itself again (same process) with -X no_debug_ranges: no column tables
    assert (state["pid"], state["columns"]) == (server.pid, False)


@pytest.mark.skipif(sys.platform != "linux", reason="/proc, and the re-exec is Linux's")
def test_the_server_runs_again_with_no_debug_ranges_under_its_name(tmp_path: Path) -> None:
    """``jobyard serve`` replaces itself with ``python -X no_debug_ranges …``: the same
    process, still named ``jobyard``, whose jobs' Python keeps its column tables."""
    port = _free_port()
    script = Path(sys.executable).parent / "jobyard"
    server = _serve([str(script)], port, tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        proc = Path(f"/proc/{server.pid}")
        name = (proc / "comm").read_text().strip()
        argv = (proc / "cmdline").read_bytes().decode().split("\0")[:-1]
        key = json.loads((tmp_path / "credentials.json").read_text())["api_key"]
        code = (
            "import json, sys;"
            "print(json.dumps([sys._xoptions, json.dumps.__code__.co_positions().__next__()]))"
        )
        job = httpx.post(
            f"{url}/v1/jobs",
            json={"entrypoint": ["python3", "-c", code]},
            headers={"Authorization": f"Bearer {key}"},
        ).json()
        logs = wait_for(lambda: _ended_logs(url, key, job["id"]), timeout=60, interval=0.1)
    finally:
        server.terminate()
        server.wait(30)
    assert name == "jobyard"
    assert argv[:4] == [sys.executable, "-X", "no_debug_ranges", "-X"]
    assert argv[5:] == [str(script), "serve", "--port", str(port), "--slots", "1"]
    xoptions, first_position = json.loads(logs.strip().splitlines()[-1])
    assert xoptions == {}
    assert first_position[2] is not None  # the job's code has its columns


def _serve(program: list[str], port: int, home: Path) -> subprocess.Popen[bytes]:
    """``program serve`` on ``port`` with its data in ``home``, once it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env |= {"JOBYARD_HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}
    server = subprocess.Popen(
        [*program, "serve", "--port", str(port), "--slots", "1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url, server), timeout=60, interval=0.05)
    except BaseException:
        server.terminate()
        server.wait(30)
        raise
    return server


def _ended_logs(url: str, key: str, job_id: str) -> str | None:
    headers = {"Authorization": f"Bearer {key}"}
    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
    if job["status"] not in ("succeeded", "failed", "timed_out", "cancelled"):
        return None
    assert job["status"] == "succeeded", job
    return httpx.get(f"{url}/v1/jobs/{job_id}/logs", headers=headers).text


def _answers(url: str, server: subprocess.Popen[bytes]) -> bool:
    assert server.poll() is None, f"jobyard serve exited with {server.returncode}"
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_app_serves_each_routers_own_routes(tmp_path: Path) -> None:
    """``app.include_router`` would build every route a second time on its first request
    (≈ 2 MB for all of them): the app holds the routes its routers built (the
    dashboard's once loaded)."""
    from jobyard import web
    from jobyard.api import app as api_app
    from jobyard.web import admin, auth, catalog, jobs, submit

    services, _ = start_services(Settings.from_env(data_dir=tmp_path, slots=1))
    try:
        app = api_app.create_app(services)
        web.load(app)
    finally:
        services.close()
    routers = [
        getattr(api_app, name).router
        for name in dir(api_app)
        if isinstance(getattr(getattr(api_app, name), "router", None), APIRouter)
    ]
    routers += [module.router for module in (auth, jobs, submit, catalog, admin)]
    assert len(routers) >= 22
    held = {id(route) for route in app.routes}
    for router in routers:
        assert router.routes
        assert all(id(route) in held for route in router.routes), router.prefix


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--help"], 0, "Run the jobyard server (API and workers) in the foreground."),
        (["--slots", "0"], 2, "Invalid value for '--slots'"),
        (["--no-such-option"], 2, "No such option: --no-such-option"),
    ],
)
def test_serve_reads_its_options_in_a_child(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    """What typer says and the exit code reach the user from the child that read them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env |= {"JOBYARD_HOME": str(tmp_path), "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "jobyard"), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert says in done.stdout + done.stderr
    assert not (tmp_path / "jobyard.db").exists()  # no server started


_DASHBOARD_AT_START = """
import json, sys
from pathlib import Path
from jobyard import web
from jobyard.api.app import create_app
from jobyard.server import start_services
from jobyard.settings import Settings
services, _ = start_services(Settings.from_env(data_dir=Path(sys.argv[1]), slots=1))
app = create_app(services)
before = sorted(m for m in sys.modules if m.startswith("jobyard.web."))
count = len(app.routes)
web.load(app)
web.load(app)  # once only
from jobyard.web.base import PREFIX
paths = [getattr(r, "path", "") for r in app.routes[count - 1 :]]
print(json.dumps({"before": before, "added": len(app.routes) - count, "paths": paths,
                  "prefix": PREFIX}))
services.close()
"""


def test_the_dashboard_is_loaded_on_its_first_request(tmp_path: Path) -> None:
    """The app starts without the dashboard's modules; its routes come in the stand-in's
    place, once, all under its paths; a real server answers a first burst of requests to
    its pages as before (a redirect, the sign-in page, a static file, a 404)."""
    found = _run(_DASHBOARD_AT_START, str(tmp_path / "a"))
    assert found["before"] == [] and found["prefix"] == "/ui"
    assert found["added"] > 20 and all(p == "/" or p.startswith("/ui") for p in found["paths"])
    port = _free_port()
    server = _serve([str(Path(sys.executable).parent / "jobyard")], port, tmp_path / "b")
    url = f"http://127.0.0.1:{port}"
    try:

        def get(path: str) -> tuple[int, str]:
            r = httpx.get(url + path, timeout=30, follow_redirects=False)
            return r.status_code, r.headers.get("location", r.text[:2000])

        paths = ["/ui/sign-in", "/", "/ui/static/app.css", "/ui/no-such-page", "/ui/jobs"] * 2
        with ThreadPoolExecutor(len(paths)) as pool:  # the first requests, at once
            answers = dict(zip(paths, pool.map(get, paths), strict=False))
        assert answers["/ui/sign-in"][0] == 200 and "sign" in answers["/ui/sign-in"][1].lower()
        assert answers["/"][0] in (302, 303, 307) and answers["/"][1].startswith("/ui")
        assert answers["/ui/static/app.css"][0] == 200
        assert answers["/ui/no-such-page"][0] == 404
        assert answers["/ui/jobs"] == (303, "/ui/sign-in?next=/ui/jobs")
        assert get("/ui/sign-in")[0] == 200 and get("/v1/jobs")[0] == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
