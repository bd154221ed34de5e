"""The notebook runners as real subprocesses, through a real ipykernel (no mocks).

Jupyter cells are numbered from 0 (their position in the notebook), Zeppelin paragraphs
from 1, as the runners document.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from jobyard.markers import parse_marker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOTEBOOKS, NOTES = FIXTURES / "notebooks", FIXTURES / "notes"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def markers(self) -> list[dict[str, Any]]:
        return [m for m in map(parse_marker, self.stdout.splitlines()) if m is not None]

    @property
    def last_line(self) -> str:
        return self.stdout.rstrip("\n").splitlines()[-1]

    def statuses(self, type_: str) -> dict[int, str]:
        """Final status per cell/paragraph index (started if it never ended)."""
        return {m["index"]: m["status"] for m in self.markers if m["type"] == type_}

    def marker(self, type_: str, index: int, status: str) -> dict[str, Any]:
        found = [
            m
            for m in self.markers
            if (m["type"], m.get("index"), m["status"]) == (type_, index, status)
        ]
        assert len(found) == 1, f"no single {type_} {index} {status} marker in:\n{self.stdout}"
        return found[0]

    def summary(self, type_: str) -> dict[str, Any]:
        found = [m for m in self.markers if m["type"] == type_]
        assert len(found) == 1, self.stdout
        return found[0]


def argv(
    module: str, source: Path, tmp_path: Path, params: dict[str, Any], *extra: str
) -> list[str]:
    """Copy ``source`` and a parameters.json into ``tmp_path``; the runner's command."""
    if source.parent != tmp_path:
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "parameters.json").write_text(json.dumps(params))
    output = "executed.ipynb" if module == "jupyter" else "executed.json"
    command = [sys.executable, "-m", f"jobyard.runners.{module}", source.name]
    return command + f"--parameters parameters.json --output {output}".split() + list(extra)


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBYARD_OUTPUT_DIR"}
    return {**env, **extra}


def run(
    module: str, source: Path, tmp_path: Path, params: dict[str, Any], *extra: str, **env: str
) -> Run:
    done = subprocess.run(
        argv(module, source, tmp_path, params, *extra),
        cwd=tmp_path,
        env=job_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def executed_cells(tmp_path: Path) -> list[Any]:
    return list(nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells)


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start(command: list[str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a runner in the background, its output going to ./job.log."""
    log_path = tmp_path / "job.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=job_env(), stdout=log, stderr=subprocess.STDOUT
        )
    return proc, log_path


def terminate(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """SIGTERM ``proc`` and wait for it; its descendants as they were before."""
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the runner has started nothing"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 20  # interrupted, not waiting for the 60 s sleep
    return children


def outputs_text(cell: dict[str, Any]) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


# ---------------------------------------------------------------- Jupyter


def test_jupyter_injects_parameters_and_saves_the_executed_notebook(tmp_path: Path) -> None:
    result = run(
        "jupyter",
        NOTEBOOKS / "params.ipynb",
        tmp_path,
        {"threshold": 0.9, "rows": 5, "not-a-name": 1},
        JOBYARD_OUTPUT_DIR=str(tmp_path / "out"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and rows[0].startswith("row,")
    assert "threshold=0.9" in result.stdout.splitlines()
    assert "warning: parameter 'not-a-name'" in result.stdout
    assert result.statuses("cell") == {1: "succeeded", 2: "succeeded", 3: "succeeded"}
    assert result.marker("cell", 1, "started")["source_preview"] == "threshold = 0.5"
    assert result.summary("notebook") == {
        "type": "notebook",
        "cells": 3,
        "ran": 3,
        "failed": [],
        "status": "succeeded",
    }
    assert result.last_line == "notebook succeeded: 3 cells"

    cells = executed_cells(tmp_path)
    tags = [c["metadata"].get("tags", []) for c in cells]
    assert tags[1] == ["parameters"] and tags[2] == ["injected-parameters"]
    assert "threshold = 0.9\nrows = 5\n" in cells[2]["source"]
    assert outputs_text(cells[-1]) == "threshold=0.9\n"


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "continue-on-error"])
def test_jupyter_failing_cell_fails_the_notebook(tmp_path: Path, keep_going: bool) -> None:
    extra = ["--continue-on-error"] if keep_going else []
    result = run("jupyter", NOTEBOOKS / "failing.ipynb", tmp_path, {}, *extra)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.marker("cell", 1, "failed")["error"] == "ValueError: bad cell"
    assert "ValueError: bad cell" in result.stdout  # the traceback is in the log
    lines = result.stdout.splitlines()
    assert "first" in lines and ("third" in lines) is keep_going
    expected = {0: "succeeded", 1: "failed"} | ({2: "succeeded"} if keep_going else {})
    assert result.statuses("cell") == expected
    assert result.summary("notebook")["failed"] == [1]
    assert result.summary("notebook")["status"] == "failed"
    assert result.last_line == "notebook failed: cell 1 failed: ValueError: bad cell"

    cells = executed_cells(tmp_path)
    code = [c for c in cells if "injected-parameters" not in c["metadata"].get("tags", [])]
    assert outputs_text(code[0]) == "first\n"
    assert [o["ename"] for o in code[1]["outputs"] if o["output_type"] == "error"] == ["ValueError"]
    assert outputs_text(code[2]) == ("third\n" if keep_going else "")


def test_jupyter_sigterm_interrupts_and_saves_what_ran(tmp_path: Path) -> None:
    proc, log_path = start(argv("jupyter", NOTEBOOKS / "slow.ipynb", tmp_path, {}), tmp_path)
    wait_for((tmp_path / "partial.txt").exists, what="cell 0 to write partial.txt")
    cell_1_started = '"index":1,"status":"started"'  # cell 0 has ended, cell 1 sleeps
    wait_for(lambda: cell_1_started in log_path.read_text(), what="cell 1 to start")
    kernels = terminate(proc)

    result = Run(143, log_path.read_text())
    assert (tmp_path / "partial.txt").read_text() == "cell 0 ran\n"
    assert result.statuses("cell") == {0: "succeeded", 1: "failed"}
    assert "(interrupted by SIGTERM)" in result.marker("cell", 1, "failed")["error"]
    assert result.summary("notebook")["status"] == "terminated"
    assert result.last_line.startswith("notebook terminated: stopped by SIGTERM")
    cells = executed_cells(tmp_path)
    assert outputs_text(cells[1]) == "partial written\n"  # cells[0] is the injected one
    wait_for(lambda: all(map(gone, kernels)), what="the kernel to exit")


# ---------------------------------------------------------------- Zeppelin


def test_zeppelin_note_shares_one_kernel_and_runs_sh(tmp_path: Path) -> None:
    result = run("zeppelin", NOTES / "ok.zpln", tmp_path, {"base": 100})

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "x=101" in lines and "x+1=102" in lines  # x persists between %python paragraphs
    assert "from shell base=100" in lines
    assert (tmp_path / "shell.txt").read_text() == "shell\n"
    assert result.statuses("paragraph") == {
        1: "skipped",
        2: "succeeded",
        3: "succeeded",
        4: "succeeded",
    }
    assert result.marker("paragraph", 1, "skipped")["reason"] == "markdown"
    assert result.marker("paragraph", 4, "started")["interpreter"] == "sh"
    assert result.summary("note") == {
        "type": "note",
        "paragraphs": 4,
        "ran": 3,
        "failed": [],
        "status": "succeeded",
    }

    paragraphs = json.loads((tmp_path / "executed.json").read_text())["paragraphs"]
    assert [p["status"] for p in paragraphs] == ["SKIPPED", "FINISHED", "FINISHED", "FINISHED"]
    assert paragraphs[2]["results"] == {
        "code": "SUCCESS",
        "msg": [{"type": "TEXT", "data": "x+1=102\n"}],
    }


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "continue-on-error"])
def test_zeppelin_failing_sh_fails_the_note(tmp_path: Path, keep_going: bool) -> None:
    extra = ["--continue-on-error"] if keep_going else []
    result = run("zeppelin", NOTES / "failing_sh.zpln", tmp_path, {}, *extra)

    assert result.returncode == 1, result.stdout + result.stderr
    failed = result.marker("paragraph", 2, "failed")
    assert failed["title"] == "export" and failed["error"] == "%sh exited with status 3"
    assert ("after" in result.stdout.splitlines()) is keep_going
    assert result.summary("note")["failed"] == [2]
    assert (
        result.last_line == 'note failed: paragraph 2 ("export") failed: %sh exited with status 3'
    )

    paragraphs = json.loads((tmp_path / "executed.json").read_text())["paragraphs"]
    statuses = [p["status"] for p in paragraphs]
    assert statuses == ["FINISHED", "ERROR", "FINISHED" if keep_going else "READY"]
    assert paragraphs[1]["results"]["code"] == "ERROR"


def test_zeppelin_unsupported_interpreter_is_named(tmp_path: Path) -> None:
    result = run("zeppelin", NOTES / "unsupported.zpln", tmp_path, {})

    assert result.returncode == 1, result.stdout + result.stderr
    error = result.marker("paragraph", 2, "failed")["error"]
    assert error.startswith('unsupported interpreter %sql in paragraph 2 ("query")')
    assert result.last_line.startswith(
        'note failed: unsupported interpreter %sql in paragraph 2 ("query")'
    )


def test_zeppelin_sigterm_stops_the_running_sh_paragraph(tmp_path: Path) -> None:
    note = {"paragraphs": [
        {"title": "set", "text": "%python\nvalue = 1"},
        {"title": "wait", "text": "%sh\necho waiting\nsleep 60\necho done"},
        {"title": "never", "text": "%python\nprint('never')"},
    ]}  # fmt: skip
    (tmp_path / "slow.zpln").write_text(json.dumps(note))
    proc, log_path = start(argv("zeppelin", tmp_path / "slow.zpln", tmp_path, {}), tmp_path)
    wait_for(lambda: "waiting" in log_path.read_text(), what="the %sh paragraph to start")
    children = terminate(proc)

    result = Run(143, log_path.read_text())
    assert result.statuses("paragraph") == {1: "succeeded", 2: "failed"}
    assert "(interrupted by SIGTERM)" in result.marker("paragraph", 2, "failed")["error"]
    assert result.summary("note")["status"] == "terminated"
    paragraphs = json.loads((tmp_path / "executed.json").read_text())["paragraphs"]
    assert [p["status"] for p in paragraphs] == ["FINISHED", "ERROR", "READY"]
    wait_for(lambda: all(map(gone, children)), what="the kernel, sh and sleep to exit")
