"""The CLI without a server: help, parsing, and runs against a fake transport."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from jobyard.cli import common, exitcodes, parsing, submit
from jobyard.cli.main import app
from jobyard.cli.render import format_duration
from jobyard.sdk.client import Client

ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
CLIENT_ENV = ["JOBYARD_URL", "JOBYARD_API_KEY"]


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**ENV, **env})


# -- help -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "serve",
            ["--host", "--port", "--data-dir", "--database-url", "--slots", "--executor",
             "--ray-address", "JOBYARD_HOME", "JOBYARD_DATABASE_URL", "JOBYARD_PORT"],
        ),
        (
            "submit",
            ["--name", "--description", "--type", "--priority", "--param", "--params-file",
             "--env", "--environment", "--metadata", "--timeout", "--at", "--idempotency-key", "--wait",
             "--quiet", "--json", "--command", *CLIENT_ENV],
        ),
        ("status", ["--json", *CLIENT_ENV]),
        (
            "list",
            ["--status", "--priority", "--type", "--submitted-by", "--limit", "--all",
             "--json", *CLIENT_ENV],
        ),
        ("logs", ["--follow", "-f", "--tail", *CLIENT_ENV]),
        ("cancel", ["--force", "--reason", *CLIENT_ENV]),
    ],
)  # fmt: skip
def test_help_lists_options_and_env_vars(command: str, expected: list[str]) -> None:
    result = run(command, "--help", JOBYARD_API_KEY="secret-key-value")
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output, text
    assert "secret-key-value" not in result.output


def test_root_help_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "submit", "status", "list", "logs", "cancel"):
        assert command in result.output


# -- usage errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["submit"],
        ["submit", "--name", "x"],
        ["submit", "-c", "echo hi", "--", "echo", "hi"],
        ["submit", "--param", "novalue", "--", "true"],
        ["submit", "--timeout", "0", "--", "true"],
        ["submit", "--at", "tomorrow", "--", "true"],
        ["submit", "--priority", "urgent", "--", "true"],
        ["submit", "--params-file", "/nonexistent/params.json", "--", "true"],
        ["list", "--limit", "0"],
    ],
)
def test_usage_errors_exit_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_client(*_: Any) -> Client:
        raise AssertionError("no request on a usage error")

    monkeypatch.setattr(common, "make_client", no_client)
    result = run(*args)
    assert result.exit_code == exitcodes.USAGE == 2, result.output


# -- pure parsing -------------------------------------------------------------------


def test_parse_params_json_values_else_strings() -> None:
    params = parsing.parse_params(
        [
            "threshold=0.7",
            "flag=true",
            "n=3",
            "tags=[1, 2]",
            "name=alice",
            "code=007",
            "eq=a=b",
            "empty=",
            "a.sub=1",
            "nan=NaN",
            'quoted="x"',
            "none=null",
        ]
    )
    assert params == {
        "threshold": 0.7,
        "flag": True,
        "n": 3,
        "tags": [1, 2],
        "name": "alice",
        "code": "007",
        "eq": "a=b",
        "empty": "",
        "a.sub": 1,
        "nan": "NaN",
        "quoted": "x",
        "none": None,
    }


def test_parse_params_overrides_base_and_rejects_missing_equals() -> None:
    assert parsing.parse_params(["a=2"], {"a": 1, "b": 1}) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parsing.parse_params(["=1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parsing.parse_params(["abc"])


def test_parse_pairs_keep_strings() -> None:
    assert parsing.parse_pairs(["REGION=eu", "N=1"]) == {"REGION": "eu", "N": "1"}


def test_params_file(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text('{"a": 1}')
    assert parsing.load_params_file(good) == {"a": 1}
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        parsing.load_params_file(bad)


def test_parse_time_and_csv() -> None:
    assert parsing.parse_time("2030-01-01T10:00:00Z") == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert parsing.parse_time("2030-01-01T10:00").tzinfo is not None  # local time
    assert parsing.split_csv(["queued,running", " failed ", ""]) == ["queued", "running", "failed"]


def test_build_submission(tmp_path: Path) -> None:
    params_file = tmp_path / "p.json"
    params_file.write_text('{"threshold": 0.5, "keep": "yes"}')
    kwargs = submit.build_submission(
        ["python3", "-c", "print('hi')"],
        None,
        params=["threshold=0.7"],
        params_file=params_file,
        env=["REGION=eu"],
        metadata=[],
        timeout=5,
        at="2030-01-01T10:00:00+01:00",
        environment="py-small",
    )
    assert kwargs == {
        "entrypoint": ["python3", "-c", "print('hi')"],
        "model": None,
        "environment": "py-small",
        "parameters": {"threshold": 0.7, "keep": "yes"},
        "env": {"REGION": "eu"},
        "metadata": None,
        "timeout_s": 5,
        "scheduled_at": datetime(2030, 1, 1, 9, tzinfo=UTC),
    }
    shell = submit.build_submission(
        None, "echo $HOME", params=[], params_file=None, env=[], metadata=[], timeout=None, at=None
    )
    assert shell["entrypoint"] == "echo $HOME"
    with pytest.raises(typer.BadParameter):
        submit.build_submission(
            None, None, params=[], params_file=None, env=[], metadata=[], timeout=None, at=None
        )
    model = submit.build_submission(
        None,
        None,
        params=[],
        params_file=None,
        env=[],
        metadata=[],
        timeout=None,
        at=None,
        model="churn:1.0.0",
    )
    assert model["entrypoint"] is None and model["model"] == "churn:1.0.0"
    with pytest.raises(typer.BadParameter):
        submit.build_submission(
            ["x"],
            None,
            params=[],
            params_file=None,
            env=[],
            metadata=[],
            timeout=None,
            at=None,
            model="churn:1.0.0",
        )


def test_parse_bindings() -> None:
    assert submit.parse_bindings(["customers=folder:q3-input", "threshold=0.7", "label=eu"]) == [
        {"role": "customers", "folder": "q3-input"},
        {"role": "threshold", "value": 0.7},
        {"role": "label", "value": "eu"},
    ]
    with pytest.raises(ValueError):
        submit.parse_bindings(["novalue"])


def test_format_duration() -> None:
    assert [format_duration(ms) for ms in (None, 48, 1234, 185_000, 7_380_000)] == [
        "-",
        "48ms",
        "1.2s",
        "3m 05s",
        "2h 03m",
    ]


# -- runs against a fake server -------------------------------------------------------

T0 = datetime(2030, 1, 1, 10, tzinfo=UTC)


class FakeServer:
    """Submitted jobs end with ``outcome`` on their first GET; ``fail`` answers everything."""

    def __init__(self, outcome: str = "succeeded") -> None:
        self.outcome = outcome
        self.fail: httpx.Response | None = None
        self.requests: list[httpx.Request] = []
        self.jobs: dict[str, dict[str, Any]] = {}

    def job(self, job_id: str, status: str) -> dict[str, Any]:
        return {
            "id": job_id,
            "name": "hello",
            "status": status,
            "priority": "high",
            "created_at": T0.isoformat(),
            "started_at": T0.isoformat(),
            "ended_at": (T0 + timedelta(seconds=2)).isoformat(),
            "exit_code": {"succeeded": 0, "failed": 3}.get(status),
            "message": f"Job {status}.",
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None:
            return self.fail
        path = request.url.path
        if request.method == "POST" and path == "/v1/jobs":
            job = self.jobs["1b2c3d4e-0000-4000-8000-000000000001"] = self.job(
                "1b2c3d4e-0000-4000-8000-000000000001", "queued"
            )
            return httpx.Response(201, json=job)
        if path == "/v1/jobs":
            items = [
                self.job("2b2c3d4e-0000-4000-8000-000000000002", "running"),
                self.job("1b2c3d4e-0000-4000-8000-000000000001", "succeeded"),
            ]
            summary = {"total": 2, "by_status": {"running": 1, "succeeded": 1}}
            return httpx.Response(
                200, json={"items": items, "next_cursor": None, "summary": summary}
            )
        if path == "/v1/jobs/1b2c3d4e-0000-4000-8000-000000000001/logs":
            if request.url.params.get("follow") == "true":
                return httpx.Response(200, content=iter([b"one\n", b"two\n"]))
            return httpx.Response(200, text="hi\n", headers={"X-Log-Next-Offset": "3"})
        if path == "/v1/jobs/1b2c3d4e-0000-4000-8000-000000000001/cancel":
            return httpx.Response(
                202, json=self.job("1b2c3d4e-0000-4000-8000-000000000001", "cancelling")
            )
        if path == "/v1/jobs/1b2c3d4e-0000-4000-8000-000000000001":
            return httpx.Response(
                200, json=self.job("1b2c3d4e-0000-4000-8000-000000000001", self.outcome)
            )
        return httpx.Response(404, json={"code": "NOT_FOUND", "message": "job x does not exist"})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    server = FakeServer()
    transport = httpx.MockTransport(server.handler)

    def make_client(url: str | None, api_key: str | None) -> Client:
        return Client(url or "http://fake", api_key or "tok", transport=transport)

    monkeypatch.setattr(common, "make_client", make_client)
    monkeypatch.setattr(submit, "POLL_INTERVAL_S", 0)
    return server


SUBMIT = ["submit", "--name", "hello", "--priority", "high", "--wait", "--", "python3", "-c", "x"]


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("succeeded", 0), ("failed", 1), ("timed_out", 3), ("cancelled", 4)],
)
def test_submit_wait_exit_code_follows_the_job(fake: FakeServer, outcome: str, code: int) -> None:
    fake.outcome = outcome
    result = run(*SUBMIT)
    assert result.exit_code == code, result.output
    assert f"1b2c3d4e-0000-4000-8000-000000000001 {outcome}" in result.stdout
    assert f"Job {outcome}." in result.stdout
    body = json.loads(fake.requests[0].content)
    assert body == {"entrypoint": ["python3", "-c", "x"], "name": "hello", "priority": "high"}


def test_submit_wait_json(fake: FakeServer) -> None:
    fake.outcome = "failed"
    result = run("submit", "--json", *SUBMIT[1:])
    assert result.exit_code == exitcodes.JOB_FAILED
    assert json.loads(result.stdout)["status"] == "failed"


@pytest.mark.parametrize(
    ("response", "code", "message"),
    [
        (
            httpx.Response(422, json={"code": "VALIDATION_ERROR", "message": "bad name"}),
            exitcodes.REFUSED,
            "bad name",
        ),
        (
            httpx.Response(401, json={"code": "UNAUTHENTICATED", "message": "no key"}),
            exitcodes.AUTH_FAILED,
            "no key",
        ),
        (
            httpx.Response(503, json={"code": "STORE_UNAVAILABLE", "message": "db down"}),
            exitcodes.UNAVAILABLE,
            "db down",
        ),
    ],
)
def test_submit_refused(
    fake: FakeServer, response: httpx.Response, code: int, message: str
) -> None:
    fake.fail = response
    result = run(*SUBMIT)
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_server_exits_7(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    monkeypatch.setattr(
        common,
        "make_client",
        lambda url, key: Client(url, key, transport=httpx.MockTransport(refuse)),
    )
    result = run("submit", "--url", "http://nowhere:1", *SUBMIT[1:])
    assert result.exit_code == exitcodes.UNAVAILABLE == 7
    assert "http://nowhere:1" in result.stderr and "jobyard serve" in result.stderr


def test_submit_env_vars_and_environment_are_two_options(fake: FakeServer) -> None:
    result = run("submit", "--env", "REGION=eu", "--environment", "py-small", "-q", "--", "true")
    assert result.exit_code == 0, result.output
    body = json.loads(fake.requests[0].content)
    assert (body["env"], body["environment"]) == ({"REGION": "eu"}, "py-small")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--env", "py-small"], "use --environment py-small"),
        (["--env", "A=1", "--env", "py-small"], "use --environment py-small"),
        (["--environment", "REGION=eu"], "use --env REGION=eu"),
    ],
)
def test_a_value_for_the_other_option_names_it(
    args: list[str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_client(*_: Any) -> Client:
        raise AssertionError("no request on a usage error")

    monkeypatch.setattr(common, "make_client", no_client)
    result = run("submit", *args, "--", "true")
    assert result.exit_code == exitcodes.USAGE, result.output
    assert expected in " ".join(result.output.replace("│", " ").split()), result.output


def test_submit_without_wait_prints_id_and_status(fake: FakeServer) -> None:
    result = run("submit", "-c", "echo hi", "--param", "threshold=0.7")
    assert result.exit_code == 0
    assert "1b2c3d4e-0000-4000-8000-000000000001" in result.stdout and "queued" in result.stdout
    assert json.loads(fake.requests[0].content)["parameters"] == {"threshold": 0.7}
    quiet = run("submit", "-q", "--", "echo", "-c", "not an option")
    assert quiet.stdout == "1b2c3d4e-0000-4000-8000-000000000001\n"
    assert json.loads(fake.requests[1].content)["entrypoint"] == ["echo", "-c", "not an option"]


def test_url_and_api_key_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"id": "1b2c3d4e-0000-4000-8000-000000000001", "status": "running"}
        )

    monkeypatch.setattr(
        common,
        "make_client",
        lambda url, key: Client(url, key, transport=httpx.MockTransport(handler)),
    )
    assert (
        run(
            "status",
            "1b2c3d4e-0000-4000-8000-000000000001",
            "--url",
            "http://flag:1",
            JOBYARD_API_KEY="env-key",
        ).exit_code
        == 0
    )
    assert str(seen[0].url) == "http://flag:1/v1/jobs/1b2c3d4e-0000-4000-8000-000000000001"
    assert seen[0].headers["Authorization"] == "Bearer env-key"


def test_status_list_logs_cancel(fake: FakeServer) -> None:
    status = run("status", "1b2c3d4e-0000-4000-8000-000000000001")
    assert status.exit_code == 0 and "succeeded" in status.stdout and "hello" in status.stdout
    listed = run("list", "--status", "running,succeeded", "--status", "failed")
    assert listed.exit_code == 0
    assert (
        "2b2c3d4e-0000-4000-8000-000000000002" in listed.stdout
        and "2 jobs: 1 running · 1 succeeded" in listed.stdout
    )
    params = fake.requests[-1].url.params
    assert params.get_list("status") == ["running", "succeeded", "failed"]
    assert json.loads(run("list", "--json").stdout)["summary"]["total"] == 2
    assert run("logs", "1b2c3d4e-0000-4000-8000-000000000001").stdout == "hi\n"
    followed = run("logs", "1b2c3d4e-0000-4000-8000-000000000001", "-f", "--tail", "5")
    assert followed.exit_code == 0 and followed.stdout == "hi\none\ntwo\n"
    assert fake.requests[-1].url.params["offset"] == "3"
    cancelled = run("cancel", "1b2c3d4e-0000-4000-8000-000000000001", "--force")
    assert cancelled.exit_code == 0 and "cancelling" in cancelled.stdout
    assert json.loads(fake.requests[-1].content) == {"force": True}


def test_unknown_job_exits_5(fake: FakeServer) -> None:
    result = run("status", "nope")
    assert result.exit_code == exitcodes.REFUSED == 5
    assert result.stderr == "error: no job id starts with 'nope'\n"
