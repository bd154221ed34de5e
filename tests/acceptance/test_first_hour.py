"""Issue 14, "the first hour": what a new user trips over, through the user's own path:
the real ``jobyard`` CLI (a subprocess) and the SDK against one real ``jobyard serve``
(SQLite; shared by the module to keep it fast)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard.markers import format_marker
from jobyard.sdk.client import Client
from jobyard.sdk.errors import Unauthenticated
from tests.acceptance.serverproc import (
    JOBYARD,
    PY,
    Server,
    _clean_env,
    _describe,
    _free_port,
    jobyard,
    jobyard_all,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

MARKER = format_marker("progress", percent=50, stage="half way")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("first-hour")
    home = root / "home"
    home.mkdir()
    db_url = f"sqlite:///{home / 'jobyard.db'}"
    args = ("--log-format", "json")
    srv = Server(home, db_url, root / "serve.log", _free_port(), args).start()
    try:
        yield srv
    finally:
        srv.stop()


def _key(server: Server) -> str:
    key: str = json.loads((server.home / "credentials.json").read_text())["api_key"]
    return key


def _client(server: Server) -> Client:
    return Client(server.url, _key(server))


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBYARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


# -- credentials outside the clone ----------------------------------------------------------


def test_cli_and_sdk_find_a_local_server_from_any_directory(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_config = server.home.parent / "user-config"  # XDG_CONFIG_HOME of the test's server
    assert json.loads((user_config / "jobyard" / "credentials.json").read_text()) == {
        "url": server.url,
        "api_key": _key(server),
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in _clean_env(server.home).items() if k != "JOBYARD_HOME"}

    empty = tmp_path / "empty-config"
    local_dir = tmp_path / "with-local"
    (local_dir / ".jobyard").mkdir(parents=True)
    shutil.copy(server.home / "credentials.json", local_dir / ".jobyard" / "credentials.json")
    no_user = {**env, "XDG_CONFIG_HOME": str(empty)}
    runs = [
        (["list", "--json"], elsewhere, env),  # anywhere: the per-user credentials
        (["list", "--url", server.url], elsewhere, no_user),  # none: say where it looked
        (["list"], elsewhere, no_user),  # nor a URL: the same, for the default URL
        (["list", "--json"], local_dir, no_user),  # the current directory's .jobyard
    ]
    with ThreadPoolExecutor(len(runs)) as pool:
        found, lost, unreachable, local = pool.map(lambda r: _run(*r), runs)

    assert found.returncode == 0, _describe(found)
    assert "summary" in json.loads(found.stdout)
    assert lost.returncode != 0, _describe(lost)
    assert "Traceback" not in lost.stderr and len(lost.stderr.strip().splitlines()) == 1
    searched = f"{elsewhere}/.jobyard/credentials.json, {empty}/jobyard/credentials.json"
    assert f"no credentials.json in {searched}" in lost.stderr, lost.stderr
    assert "JOBYARD_API_KEY" in lost.stderr and "jobyard serve" in lost.stderr
    assert unreachable.returncode != 0
    assert f"no credentials.json of a local server in {searched}" in unreachable.stderr
    assert local.returncode == 0, _describe(local)

    # the SDK raises the same message (an APIError, not a bare 401)
    for name in ("JOBYARD_HOME", "JOBYARD_API_KEY", "JOBYARD_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(empty))
    monkeypatch.chdir(tmp_path)
    with Client(server.url) as client, pytest.raises(Unauthenticated) as caught:
        client.list()
    assert f"no credentials.json in {tmp_path}/.jobyard/credentials.json" in caught.value.message


# -- output, markers, short ids ----------------------------------------------------------------


def test_submit_wait_shows_the_output_and_logs_hide_markers(server: Server) -> None:
    program = f"print('line one'); print({MARKER!r}); print('line two', flush=True)"
    result, quiet = jobyard_all(
        server,
        ["submit", "--wait", "--", PY, "-c", program],
        ["submit", "--wait", "--quiet", "--", PY, "-c", program],
    )
    assert result.returncode == 0, _describe(result)
    lines = result.stdout.splitlines()
    assert lines[:2] == ["line one", "line two"], _describe(result)
    assert re.match(r"job \S+ succeeded", lines[2]), _describe(result)
    assert "::jobyard::" not in result.stdout

    assert quiet.returncode == 0, _describe(quiet)
    job_id = quiet.stdout.strip()
    assert quiet.stdout == f"{job_id}\n"

    logs, raw = jobyard_all(server, ["logs", job_id[:8]], ["logs", job_id[:8], "--raw"])
    assert logs.returncode == 0, _describe(logs)
    assert logs.stdout == "line one\nline two\n"
    assert raw.stdout == f"line one\n{MARKER}\nline two\n", _describe(raw)


def test_a_unique_prefix_stands_for_a_job_id(server: Server) -> None:
    client = _client(server)
    # 17 jobs (pigeonhole: two share a first character), scheduled far ahead: none runs
    batch = client.submit_batch(
        [{"entrypoint": ["true"], "scheduled_at": "2099-01-01T00:00:00Z"} for _ in range(17)]
    )
    ids = [item.id for item in batch.items if item.id]
    assert len(ids) == 17, batch
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    target = ids[-1]
    client.cancel(target)  # ended: it can be retried
    unique = next(n for n in range(4, 37) if sum(i.startswith(target[:n]) for i in ids) == 1)

    status, ambiguous, unknown, retried = jobyard_all(
        server,
        ["status", target[:unique], "--json"],
        ["status", shared],
        ["logs", "zz"],
        ["retry", target[:unique], "--json"],
    )
    assert status.returncode == 0, _describe(status)
    assert json.loads(status.stdout)["id"] == target
    assert ambiguous.returncode != 0, _describe(ambiguous)
    assert f"'{shared}' is the start of more than one job id" in ambiguous.stderr
    assert "give more characters" in ambiguous.stderr
    assert unknown.returncode == 5, _describe(unknown)
    assert unknown.stderr == "error: no job id starts with 'zz'\n"
    assert retried.returncode == 0, _describe(retried)
    assert json.loads(retried.stdout)["retry_of"] == target


# -- a model job: setup stages, status -----------------------------------------------------------


def test_model_job_setup_stages_and_status(server: Server, tmp_path: Path) -> None:
    client = _client(server)
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    client.create_folder("q3-input")
    client.upload("q3-input", data)
    client.create_environment("py-small", env_vars={"MODE": "test"})
    model = tmp_path / "score.py"
    model.write_text("import os\nprint('rows', len(os.listdir('input/customers')))\n")
    client.create_model("scorer")
    client.push_version("scorer", "1", model, input_roles=["customers:csv", "limit:optional"])
    job = client.submit(
        model="scorer:1",
        environment="py-small",
        input_folder="q3-input",
        role_bindings=[{"role": "customers", "folder": "q3-input"}, {"role": "limit", "value": 3}],
    )
    ended = server.wait_status(job.id, {"succeeded", "failed"})
    assert ended["status"] == "succeeded", ended

    stages = [e.message for e in client.events(job.id) if e.kind == "setup"]
    assert stages == [
        "fetching model scorer:1",
        "copying input folder q3-input",
        "copying folder q3-input for role customers",
    ], stages

    shown = jobyard(server, "status", job.id[:12])
    assert shown.returncode == 0, _describe(shown)
    rows = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"│ (\w[\w ]*?)  +(.*?)\s*│", shown.stdout)
    }
    assert rows["model"] == "scorer:1", shown.stdout
    assert rows["environment"] == "py-small"
    assert rows["input folder"] == "q3-input"
    assert "customers = folder q3-input" in shown.stdout
    assert "limit = 3" in shown.stdout
    assert "command -" not in " ".join(shown.stdout.split())


# -- /docs without internet ----------------------------------------------------------------------


def test_docs_page_is_served_from_the_package_and_authorize_works(server: Server) -> None:
    page = httpx.get(f"{server.url}/docs", timeout=10)
    assert page.status_code == 200
    assert re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text), page.text
    assert not re.search(r"https?://", page.text), "the docs page must load nothing from outside"
    for asset in re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page.text):
        got = httpx.get(f"{server.url}{asset}", timeout=10)
        assert got.status_code == 200, asset
        assert len(got.content) > 500, asset
    assert (
        "SwaggerUIBundle"
        in httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js", timeout=10).text
    )
    assert "Apache License" in httpx.get(f"{server.url}/docs/assets/LICENSE", timeout=10).text
    assert httpx.get(f"{server.url}/docs/assets/VERSION.txt", timeout=10).status_code == 404

    schema: dict[str, Any] = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    get_job = schema["paths"]["/v1/jobs"]["get"]
    assert get_job["security"] == [{"bearerAuth": []}]
    assert not any(p["name"].lower() == "authorization" for p in get_job.get("parameters", []))
    assert "security" not in schema["paths"]["/healthz"]["get"]
    # what "Try it out" sends after "Authorize": the key as a bearer token
    tried = httpx.get(
        f"{server.url}/v1/jobs", headers={"Authorization": f"Bearer {_key(server)}"}, timeout=10
    )
    assert tried.status_code == 200


# -- the server says what it does ----------------------------------------------------------------


def test_server_logs_requests_and_job_states_as_json_lines(server: Server) -> None:
    client = _client(server)
    job = client.submit(["true"])
    server.wait_status(job.id, {"succeeded"})

    def records() -> list[dict[str, Any]]:
        lines = server.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]  # every line is JSON

    def states() -> list[str]:
        return [r["state"] for r in records() if r.get("job_id") == job.id]

    assert wait_for(lambda: states() == ["starting", "running", "succeeded"], timeout=10)
    found = records()
    submitted = [
        r for r in found if r["logger"] == "jobyard.access" and r.get("path") == "/v1/jobs"
    ]
    assert submitted and submitted[-1]["method"] == "POST" and submitted[-1]["status"] == 201
    assert isinstance(submitted[-1]["duration_ms"], float)
    assert {"time", "level", "message"} <= submitted[-1].keys()
    assert any("serving on" in r["message"] for r in found)  # the start-up lines too
