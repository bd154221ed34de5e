"""``jobyard retry`` against a fake server: the request it sends, usage errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from jobyard.cli import common, exitcodes, watch
from jobyard.cli.main import app
from jobyard.sdk.client import Client

ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


OLD = "0d000000-0000-4000-8000-00000000000a"
NEW = "0e000000-0000-4000-8000-00000000000b"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV)


class Fake:
    """``old`` failed; its retry ``new`` ends with ``outcome`` on its first GET."""

    def __init__(self) -> None:
        self.outcome = "succeeded"
        self.bodies: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        new = {
            "id": "0e000000-0000-4000-8000-00000000000b",
            "status": "queued",
            "retry_of": "0d000000-0000-4000-8000-00000000000a",
            "parameters": {"a.b": 1},
        }
        if (
            request.method == "POST"
            and path == "/v1/jobs/0d000000-0000-4000-8000-00000000000a/retry"
        ):
            self.bodies.append(json.loads(request.content))
            return httpx.Response(201, json=new)
        if path == "/v1/jobs/0d000000-0000-4000-8000-00000000000a":
            return httpx.Response(
                200,
                json={
                    "id": "0d000000-0000-4000-8000-00000000000a",
                    "status": "failed",
                    "retries": ["0e000000-0000-4000-8000-00000000000b"],
                },
            )
        if path == "/v1/jobs/0e000000-0000-4000-8000-00000000000b":
            return httpx.Response(200, json={**new, "status": self.outcome})
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": f"no {path}"})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    server = Fake()
    transport = httpx.MockTransport(server.handler)

    def make_client(url: str | None, api_key: str | None) -> Client:
        return Client("http://fake", "tok", transport=transport)

    monkeypatch.setattr(common, "make_client", make_client)
    monkeypatch.setattr(watch, "POLL_INTERVAL_S", 0)
    return server


def test_retry_sends_the_changes_and_shows_the_lineage(fake: Fake, tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text('{"a.b": 0, "keep": "file"}')
    result = run(
        *("retry", OLD, "--params-file", str(params), "--param", "a.b=1", "--param", "t=[1]"),
        *("--priority", "high", "--reason", "fixed", "--timeout", "5"),
    )
    assert result.exit_code == 0, result.output
    assert fake.bodies == [
        {
            "parameters": {"a.b": 1, "keep": "file", "t": [1]},
            "priority": "high",
            "reason": "fixed",
            "timeout_s": 5.0,
        }
    ]
    assert result.stdout.splitlines()[:3] == [
        f"job {NEW} queued",
        f"  retry of {OLD} (failed)",
        f"  retries of {OLD}: {NEW}",
    ]


def test_retry_without_changes_sends_an_empty_body(fake: Fake) -> None:
    result = run("retry", OLD, "--json")
    assert result.exit_code == 0, result.output
    assert fake.bodies == [{}]
    assert json.loads(result.stdout)["retry_of"] == OLD


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("succeeded", 0), ("failed", 1), ("timed_out", 3), ("cancelled", 4)],
)
def test_retry_wait_exit_code_follows_the_new_job(fake: Fake, outcome: str, code: int) -> None:
    fake.outcome = outcome
    result = run("retry", OLD, "--wait")
    assert result.exit_code == code, result.output
    assert f"job {NEW} {outcome}" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["retry"],
        ["retry", OLD, "--param", "novalue"],
        ["retry", OLD, "--timeout", "0"],
        ["retry", OLD, "--priority", "urgent"],
        ["retry", OLD, "--params-file", "/nonexistent/params.json"],
        ["system", "extra"],
    ],
)
def test_usage_errors_exit_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_client(*_: Any) -> Client:
        raise AssertionError("no request on a usage error")

    monkeypatch.setattr(common, "make_client", no_client)
    assert run(*args).exit_code == exitcodes.USAGE


def test_root_help_lists_retry_and_system() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "retry" in result.stdout and "system" in result.stdout
