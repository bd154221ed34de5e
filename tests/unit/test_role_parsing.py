"""Pure parts of the registry: role specs, version refs, kinds, zips, parameter checks."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobyard.cli.envs import read_file_specs
from jobyard.cli.main import app
from jobyard.cli.models import split_version_ref
from jobyard.errors import InvalidInput
from jobyard.sdk.models import InputRole, OutputRole
from jobyard.sdk.registry import infer_kind, parse_input_role, parse_output_role, zip_directory
from jobyard.service import model_specs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customers", InputRole(role="customers", required=True)),
        ("customers:csv", InputRole(role="customers", kind="csv")),
        ("customers:csv:required", InputRole(role="customers", kind="csv", required=True)),
        ("customers:csv:optional", InputRole(role="customers", kind="csv", required=False)),
        ("temp:sensor:celsius", InputRole(role="temp", kind="sensor", metric="celsius")),
        ("temp::celsius:OPTIONAL", InputRole(role="temp", metric="celsius", required=False)),
        ("temp:optional", InputRole(role="temp", required=False)),
    ],
)
def test_parse_input_role(text: str, expected: InputRole) -> None:
    assert parse_input_role(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scores", OutputRole(role="scores", required=False)),
        ("scores:csv", OutputRole(role="scores", metric="csv")),
        ("prediction:celsius:°C:required", OutputRole(role="prediction", metric="celsius", unit="°C", required=True)),
        ("p::kg", OutputRole(role="p", unit="kg")),
        ("p:required", OutputRole(role="p", required=True)),
    ],
)  # fmt: skip
def test_parse_output_role(text: str, expected: OutputRole) -> None:
    assert parse_output_role(text) == expected


@pytest.mark.parametrize("text", ["", ":csv", "a:b:c:d", " :required", "a:b:c:d:optional"])
def test_bad_role_specs(text: str) -> None:
    with pytest.raises(ValueError, match="role"):
        parse_input_role(text)
    with pytest.raises(ValueError, match="role"):
        parse_output_role(text)


def test_split_version_ref() -> None:
    assert split_version_ref("churn:1.0.0") == ("churn", "1.0.0")
    for bad in ("churn", "churn:", ":1"):
        with pytest.raises(ValueError, match="NAME:VERSION"):
            split_version_ref(bad)


def test_read_file_specs(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text("[a]\n")
    assert read_file_specs([f"conf/a.ini={tmp_path / 'a.ini'}"]) == {"conf/a.ini": "[a]\n"}
    with pytest.raises(ValueError, match="cannot read"):
        read_file_specs([f"x={tmp_path / 'missing'}"])
    with pytest.raises(ValueError, match="PATH=LOCALFILE"):
        read_file_specs(["x="])


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("score.ipynb", "notebook"),
        ("dir/Score.IPYNB", "notebook"),
        ("note.json", "zeppelin"),
        ("report.zpln", "zeppelin"),
        ("other.json", "command"),
        ("train.py", "python"),
        ("run.sh", "command"),
        (None, "command"),
    ],
)
def test_kind_inference_is_the_same_in_sdk_and_server(name: str | None, kind: str) -> None:
    assert infer_kind(name) == kind
    assert model_specs.infer_kind(name).value == kind


def test_zip_directory_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "main.py").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("x")
    buf = io.BytesIO()
    assert zip_directory(tmp_path, buf) == 1
    assert zipfile.ZipFile(buf).namelist() == ["pkg/main.py"]


SCHEMA = {
    "type": "object",
    "properties": {
        "threshold": {"type": "number", "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["threshold"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"threshold": 1.5}, "parameters.threshold", "parameters.threshold: 1.5 is greater than the maximum of 1"),
        ({}, "parameters.threshold", "parameters.threshold: 'threshold' is a required property"),
        ({"threshold": 0, "tags": ["a", 3]}, "parameters.tags[1]", "parameters.tags[1]: 3 is not of type 'string'"),
        ({"threshold": 0, "x": 1}, "parameters", "parameters: Additional properties are not allowed ('x' was unexpected)"),
    ],
)  # fmt: skip
def test_parameter_errors_name_the_field(
    values: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        model_specs.validate_parameters(SCHEMA, values, "parameters")
    assert (err.value.details["field"], err.value.message) == (field, message)


def test_partial_validation_ignores_missing_required_only() -> None:
    model_specs.validate_parameters(SCHEMA, {"tags": []}, "default_parameters", partial=True)
    with pytest.raises(InvalidInput, match=r"default_parameters\.threshold"):
        model_specs.validate_parameters(
            SCHEMA, {"threshold": 5}, "default_parameters", partial=True
        )


def test_check_schema() -> None:
    assert model_specs.check_schema(SCHEMA) is SCHEMA
    with pytest.raises(InvalidInput) as err:
        model_specs.check_schema({"properties": {"t": {"type": "strin"}}})
    assert err.value.details["field"] == "parameters_schema"
    assert "parameters_schema.properties.t.type" in err.value.message
    with pytest.raises(InvalidInput, match="JSON Schema object"):
        model_specs.check_schema([])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["models", "push"], ["--version", "--kind", "--entrypoint", "--input-role", "--output-role",
                              "--param", "--schema", "--environment", "--description", "JOBYARD_URL"]),
        (["envs", "create"], ["--pip", "--env", "--file", "--cpu", "--memory-mb", "--max-concurrent",
                              "--description", "JOBYARD_API_KEY"]),
        (["envs", "update"], ["--rename", "--clear-pip", "--no-memory-limit"]),
        (["models"], ["create", "list", "show", "push", "versions", "deprecate", "delete-version",
                      "delete"]),
    ],
)  # fmt: skip
def test_help(command: list[str], expected: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output, text
