"""Help text and usage errors as a user reads them: no Python types in the help of any
command, choices and ranges in plain words (issue 14)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from jobyard.cli.main import build_app

ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
#: what typer shows for a Python type: <bool>, <str>, <list[str]>, <int range>, 1<=x<=500
TYPE_LEAK = re.compile(
    r"<(bool|str|int|float|path|list\[[^>]*\]|int range|float range)[^>]*>|x<=|x>=|<=x"
)


def _commands() -> list[tuple[list[str], Any]]:
    """Every command of ``jobyard`` with its path (``["definitions", "show"]``)."""
    root = typer.main.get_command(build_app())
    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():  # a group
            walk(sub, [*path, name])

    walk(root, [])
    return found


def test_no_option_of_any_command_shows_a_python_type() -> None:
    """The help's type column of every option and argument of every command, as the
    help renders it (rendering all ~50 help pages would take seconds)."""
    commands = _commands()
    assert {("submit",), ("definitions", "show"), ("logs",)} <= {tuple(p) for p, _ in commands}
    for path, cmd in commands:
        ctx = cmd.make_context(["jobyard", *path], ["--help"], resilient_parsing=True)
        for param in cmd.params:
            shown = (
                f"{param.display_type_rich(ctx) or ''} {param._get_number_range_help_str() or ''}"
            )
            leak = TYPE_LEAK.search(shown)
            assert leak is None, f"jobyard {' '.join(path)} {param.name}: {shown!r}"


def test_help_pages_in_plain_words() -> None:
    runner = CliRunner()
    out = runner.invoke(build_app(), ["list", "--help"], env=ENV).output
    assert TYPE_LEAK.search(out) is None, out
    assert re.search(r"--limit\s+INTEGER \[1 to 500\]", out), out
    assert re.search(r"--priority\s+low\|normal\|high\|critical", out), out
    assert re.search(r"--all\s+Every page", out), out  # a flag has no type
    out = runner.invoke(build_app(), ["submit", "--help"], env=ENV).output
    assert TYPE_LEAK.search(out) is None, out
    assert re.search(r"--wait\s+Wait until", out), out
    assert re.search(r"--name\s+TEXT\s+Job name", out), out
    assert re.search(r"--env\s+K=V\s+An environment variable", out), out
    assert re.search(r"--environment\s+NAME\s+Run in this environment configuration", out), out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["submit", "--priority", "urgent", "--", "true"],
            "'urgent' is not one of low, normal, high, critical",
        ),
        (["list", "--priority", "URGENT"], "'URGENT' is not one of low, normal, high, critical"),
        (["retry", "abc", "--priority", "x"], "'x' is not one of low, normal, high, critical"),
        (["envs", "create", "e", "--network", "some"], "'some' is not one of full, none"),
    ],
)
def test_bad_choice_says_what_is_allowed(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(build_app(), args, env=ENV)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert expected in text, result.output
    assert "Value error" not in text


def test_pyproject_licence_is_an_spdx_string() -> None:
    """A ``license = { text = … }`` table makes setuptools warn three times at install."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in pyproject["build-system"]["requires"])
