"""The issue's model workflow through the real CLI against a real server: register a
notebook model, an environment with a pip requirement, folders with data, submit, wait,
download the results."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.acceptance.serverproc import Server, _describe, jobyard
from tests.support.wheels import build_wheel

pytestmark = pytest.mark.acceptance
FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_model_workflow_from_the_issue(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the server inherits none of this; the CLI does
    wheel = build_wheel(tmp_path, "scoring_helpers", 7)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("id\n1\n")
    (data / "b.csv").write_text("id\n2\n")
    steps = [
        ["models", "create", "churn", "--description", "churn scoring"],
        [
            "models",
            "push",
            "churn",
            str(FIXTURES / "notebooks" / "params.ipynb"),
            "--version",
            "1.0.0",
            "--input-role",
            "customers:csv:required",
            "--output-role",
            "scores:csv",
        ],
        [
            "envs",
            "create",
            "py-small",
            "--pip",
            f"scoring_helpers @ {wheel.as_uri()}",
            "--env",
            "REGION=eu",
            "--max-concurrent",
            "1",
        ],
        ["folders", "create", "q3-input"],
        ["folders", "upload", "q3-input", str(data / "a.csv"), str(data / "b.csv")],
        ["folders", "create", "q3-output"],
    ]
    for args in steps:
        result = jobyard(server, *args)
        assert result.returncode == 0, (args, _describe(result))
    result = jobyard(
        server,
        "models",
        "push",
        "churn",
        str(FIXTURES / "notebooks" / "params.ipynb"),
        "--version",
        "1.0.0",
    )
    assert result.returncode == 5, _describe(result)  # versions are immutable
    result = jobyard(
        server,
        "submit",
        "--model",
        "churn:1.0.0",
        "--environment",
        "py-small",
        "--input-folder",
        "q3-input",
        "--output-folder",
        "q3-output",
        "--param",
        "threshold=0.7",
        "--param",
        "rows=4",
        "--wait",
        "--json",
        timeout=240,
    )
    assert result.returncode == 0, _describe(result)
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded" and job["parameters"]["threshold"] == 0.7
    out = tmp_path / "out"
    result = jobyard(server, "results", job["id"], "--download", str(out))
    assert result.returncode == 0, _describe(result)
    assert "scores.csv" in result.stdout
    assert (out / "scores.csv").read_text().count("\n") == 5  # header + 4 rows
    result = jobyard(server, "folders", "files", "q3-output")
    assert "scores.csv" in result.stdout, _describe(result)
    logs = jobyard(server, "logs", job["id"])
    assert "threshold=0.7" in logs.stdout and "creating environment" in logs.stdout
