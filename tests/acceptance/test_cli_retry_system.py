"""``jobyard retry``, ``jobyard system`` and ``--json`` on every read command, through the
real CLI (a subprocess with only ``JOBYARD_HOME`` set) against a real ``jobyard serve``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from jobyard.cli import exitcodes
from jobyard.cli.main import build_app
from tests.acceptance.serverproc import (
    ENDED,
    PY,
    Server,
    _assert_one_line_error,
    _describe,
    _free_port,
    _submit_quiet,
    jobyard,
    jobyard_all,
)
from tests.conftest import GATES

pytestmark = pytest.mark.acceptance

#: prints its parameters; fails unless ``threshold`` is at least 0.5
PARAMS_JOB = (
    "import json, os, sys; p = json.loads(os.environ['JOBYARD_PARAMETERS']); "
    "print('parameters', json.dumps(p, sort_keys=True)); "
    "sys.exit(0 if p['threshold'] >= 0.5 else 1)"
)
#: runs until the file given as its argument exists (at most 60 s)
GATE_JOB = (
    "import os, sys, time; deadline = time.monotonic() + 60\n"
    "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline: time.sleep(0.02)"
)


def _new_job_id(stdout: str) -> str:
    match = re.match(r"job (\S+) \w+\n", stdout)
    assert match, stdout
    return match.group(1)


def test_retry_a_failed_job_with_a_changed_parameter(server: Server, tmp_path: Path) -> None:
    first = jobyard(
        server,
        *("submit", "-q", "--wait", "--param", "threshold=0.3", "--param", "mode=fast"),
        *("--", PY, "-c", PARAMS_JOB),
    )
    assert first.returncode == exitcodes.JOB_FAILED, _describe(first)
    old_id = first.stdout.strip()

    retried = jobyard(
        server, "retry", old_id, "--param", "threshold=0.8", "--reason", "higher", "--wait"
    )
    assert retried.returncode == exitcodes.OK, _describe(retried)
    new_id = _new_job_id(retried.stdout)
    assert new_id != old_id
    assert f"retry of {old_id} (failed) · reason: higher" in retried.stdout, _describe(retried)
    assert f"retries of {old_id}: {new_id}\n" in retried.stdout, _describe(retried)
    assert 'parameters: {"mode": "fast", "threshold": 0.8}' in retried.stdout
    assert re.search(rf"job {new_id} succeeded · exit code 0", retried.stdout), retried.stdout

    new = server.get_job(new_id)
    assert (new["retry_of"], new["retry_reason"], new["status"]) == (old_id, "higher", "succeeded")
    assert new["parameters"] == {"threshold": 0.8, "mode": "fast"}  # merged over the old ones
    logs = jobyard(server, "logs", new_id)
    assert 'parameters {"mode": "fast", "threshold": 0.8}' in logs.stdout, _describe(logs)

    # a second retry: parameters from a file, a new priority, the new job as JSON
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"threshold": 0.9, "extra": [1, 2]}))
    again = jobyard(
        server, "retry", old_id, "--params-file", str(params), "--priority", "high", "--json"
    )
    assert again.returncode == exitcodes.OK, _describe(again)
    second = json.loads(again.stdout)
    assert (second["retry_of"], second["priority"]) == (old_id, "high")
    assert second["parameters"] == {"threshold": 0.9, "mode": "fast", "extra": [1, 2]}
    server.wait_status(second["id"], ENDED)

    status, status_json = jobyard_all(server, ["status", old_id], ["status", new_id, "--json"])
    assert re.search(rf"retries\s+{new_id}\s.*\n.*{second['id']}", status.stdout), status.stdout
    assert json.loads(status_json.stdout)["retry_of"] == old_id


def test_retry_of_a_job_that_has_not_ended_is_refused(server: Server, tmp_path: Path) -> None:
    gate = tmp_path / GATES / "go"
    job_id = _submit_quiet(server, PY, "-c", GATE_JOB, str(gate))
    server.wait_status(job_id, {"running"})

    refused, missing = jobyard_all(
        server, ["retry", job_id, "--param", "x=1", "--wait"], ["retry", "no-such-job"]
    )
    assert refused.returncode == exitcodes.REFUSED, _describe(refused)
    _assert_one_line_error(refused)
    assert "only an ended job can be retried" in refused.stderr, _describe(refused)
    assert refused.stdout == ""
    assert missing.returncode == exitcodes.REFUSED, _describe(missing)
    _assert_one_line_error(missing)

    gate.touch()
    assert server.wait_status(job_id, ENDED)["status"] == "succeeded"
    assert server.get_job(job_id)["retries"] == []


def test_system_shows_the_nodes_and_the_queue(server: Server, tmp_path: Path) -> None:
    gate = tmp_path / GATES / "go"
    running = [_submit_quiet(server, PY, "-c", GATE_JOB, str(gate)) for _ in range(2)]
    for job_id in running:  # the server's two slots are taken
        server.wait_status(job_id, {"running"})
    waiting = jobyard(server, "submit", "-q", "--priority", "high", "--", PY, "-c", "pass")
    assert waiting.returncode == 0, _describe(waiting)
    queued = waiting.stdout.strip()
    try:
        assert server.get_job(queued)["status"] == "queued"
        view, as_json = jobyard_all(server, ["system"], ["system", "--json"])
    finally:
        gate.touch()
    assert view.returncode == 0, _describe(view)
    node_id = (server.home / "node_id").read_text().strip()
    node_row = next((line for line in view.stdout.splitlines() if node_id in line), "")
    assert re.search(r"\bactive\b.*\b2/2\b", node_row), view.stdout  # slots used/capacity
    assert re.search(r"\d(ms|s) ago", node_row), view.stdout  # last heartbeat
    assert re.search(r"queued high\W+1\b", view.stdout), view.stdout
    assert re.search(r"queued normal\W+0\b", view.stdout), view.stdout
    assert re.search(r"running\W+2\b", view.stdout), view.stdout
    for label in ("average wait", "estimated drain", "throughput", "success rate"):
        assert label in view.stdout, label

    assert as_json.returncode == 0, _describe(as_json)
    status = json.loads(as_json.stdout)
    assert [n["node_id"] for n in status["execution_nodes"]] == [node_id]
    assert status["queue_statistics"]["by_priority"]["high"] == 1
    assert status["queue_statistics"]["running"] == 2
    sandbox = status["sandbox"]
    expected = "yes" if sandbox["jobs_sandboxed"] else f"no: {sandbox['sandbox_unavailable']}"
    assert re.search(rf"jobs sandboxed\s+{re.escape(expected[:40])}", view.stdout), view.stdout
    for job_id in [*running, queued]:
        assert server.wait_status(job_id, ENDED)["status"] == "succeeded"


# -- --json on every read command ----------------------------------------------------------

#: every command that reads, with the arguments that make it read something real
READ_COMMANDS: dict[str, list[str]] = {
    "status": ["status", "{job}"],
    "list": ["list"],
    "results": ["results", "{job}"],
    "system": ["system"],
    "models list": ["models", "list"],
    "models show": ["models", "show", "score"],
    "models show version": ["models", "show", "score:1.0.0"],
    "models versions": ["models", "versions", "score"],
    "envs list": ["envs", "list"],
    "envs show": ["envs", "show", "py-small"],
    "folders list": ["folders", "list"],
    "folders files": ["folders", "files", "q3-input"],
    "definitions list": ["definitions", "list"],
    "definitions show": ["definitions", "show", "{definition}"],
    "tenants list": ["tenants", "list"],
    "projects list": ["projects", "list"],
    "keys list": ["keys", "list"],
    "audit": ["audit"],
}
#: the commands that change something (several print JSON too, but need not)
WRITES = {
    *("submit", "cancel", "retry"),
    *(f"models {c}" for c in ("create", "push", "deprecate", "delete-version", "delete")),
    *(f"envs {c}" for c in ("create", "update", "delete")),
    *(f"folders {c}" for c in ("create", "upload", "rm", "delete")),
    *(f"definitions {c}" for c in ("create", "run", "delete")),
    *("tenants create", "tenants update", "projects create", "projects update"),
    *("keys create", "keys revoke"),
}
#: neither: ``logs`` prints the job's own output as it is, ``folders download`` files
OTHERS = {"serve", "logs", "folders download"}


def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every command below the click group ``group``, by its path (``models list``)."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_read_command_has_json() -> None:
    """A new command must be sorted into reads (with ``--json``, tested below), writes or
    others."""
    app: Any = typer.main.get_command(build_app())
    commands = dict(_commands(app))
    groups = {name for name, c in app.commands.items() if hasattr(c, "commands")}
    reads = {" ".join(a[:2]) if a[0] in groups else a[0] for a in READ_COMMANDS.values()}
    assert set(commands) == reads | WRITES | OTHERS
    for name in reads:
        options = {o for param in commands[name].params for o in getattr(param, "opts", [])}
        assert "--json" in options, name


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """One server (SQLite) with something of every kind: a job that ended, a model with a
    version, an environment, a folder with a file, a definition."""
    root = tmp_path_factory.mktemp("json")
    home = root / "home"
    home.mkdir()
    (root / GATES).mkdir()
    server = Server(home, f"sqlite:///{root / 'jobyard.db'}", root / "serve.log", _free_port())
    server.start()
    try:
        data = root / "a.csv"
        data.write_text("id\n1\n")
        for args in (
            ["models", "create", "score"],
            ["models", "push", "score", "--version", "1.0.0", "--kind", "command",
             "--entrypoint", "true"],
            ["envs", "create", "py-small", "--env", "REGION=eu"],
            ["folders", "create", "q3-input"],
            ["folders", "upload", "q3-input", str(data)],
            ["projects", "create", "research"],  # audited
        ):  # fmt: skip
            result = jobyard(server, *args)
            assert result.returncode == 0, (args, _describe(result))
        made = jobyard(server, "definitions", "create", "nightly", "--model", "score:1.0.0")
        assert made.returncode == 0, _describe(made)
        definition = re.search(r"definition (\S+) ", made.stdout)
        assert definition, made.stdout
        job = _submit_quiet(server, PY, "-c", "print('hi')")
        server.wait_status(job, ENDED)
        yield server, {"job": job, "definition": definition.group(1)}
    finally:
        server.stop()


@pytest.mark.parametrize("name", sorted(READ_COMMANDS))
def test_read_command_prints_one_json_document(
    filled: tuple[Server, dict[str, str]], name: str
) -> None:
    server, ids = filled
    args = [a.format(**ids) for a in READ_COMMANDS[name]]
    result = jobyard(server, *args, "--json")
    assert result.returncode == 0, _describe(result)
    document = json.loads(result.stdout)  # the whole of stdout: nothing else is printed
    assert document, _describe(result)
    if name == "status":
        assert document["id"] == ids["job"]
    if name == "definitions show":
        assert (document["id"], document["name"]) == (ids["definition"], "nightly")
