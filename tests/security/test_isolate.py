"""``sandbox.isolate``: the sandbox for a job directory that is not one of the node's own
(what :mod:`jobyard.executors.raywrap` uses on a Ray worker for its private copy of a
job), run as a real process: the job runs as ``nobody``, sees and writes its directory,
and sees nothing of the host beyond the system's and Python's paths."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobyard.executors import sandbox
from tests.support.sandbox import require_sandbox


@pytest.fixture
def host_secret() -> Iterator[Path]:
    """A file outside /tmp (which the sandbox replaces anyway) and outside the system's
    paths: what another job's files or a worker's session directory are to a job."""
    d = Path(tempfile.mkdtemp(prefix="jobyard-isolate-", dir="/var/tmp"))
    (d / "secret.txt").write_text("HOST-SECRET-51c2")
    yield d / "secret.txt"
    shutil.rmtree(d, ignore_errors=True)


def test_an_isolated_job_runs_as_nobody_in_its_directory_only(
    tmp_path: Path, host_secret: Path
) -> None:
    require_sandbox()
    assert sandbox.unavailable() == ""
    work = tmp_path / "private" / "work"
    work.mkdir(parents=True)
    (work / "input.txt").write_text("the job's input\n")
    script = (
        "id -un; cat input.txt; echo made > output.txt; "
        f"cat {host_secret} 2>/dev/null || echo no-secret; "
        f"ls {host_secret.parent} 2>/dev/null || echo no-dir; "
        f"ls {tmp_path} 2>/dev/null | grep -v private || echo only-private"
    )
    env = {"PATH": "/usr/bin:/bin"}
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        args = sandbox.isolate(["/bin/sh", "-c", script], work, env, network=False, status_fd=null)
        done = subprocess.run(
            args, cwd=work, env=env, pass_fds=(null,), capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(null)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == [
        "nobody",
        "the job's input",
        "no-secret",
        "no-dir",
        "only-private",
    ], done.stdout
    assert (work / "output.txt").read_text() == "made\n"
    assert (work / "output.txt").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert env["HOME"] == str(work) and env["USER"] == "nobody"


def test_an_isolated_jobs_loader_variables_reach_the_job_only(tmp_path: Path) -> None:
    """As raywrap starts it (the chain's environment from ``chain_env``): a job's
    ``LD_PRELOAD`` is loaded by the job's process alone, not by ``bwrap`` or ``setpriv``,
    which run as root."""
    require_sandbox()
    work = tmp_path / "private" / "work"
    work.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "./no-such-library.so"}
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        args = sandbox.isolate(["/usr/bin/printenv"], work, env, network=False, status_fd=null)
        done = subprocess.run(
            args,
            cwd=work,
            env=sandbox.chain_env(env),
            pass_fds=(null,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(null)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    # the variable, and the loader's warning of the job's two processes (isolate's
    # ``env --default-signal=TERM`` and printenv), both run as nobody
    assert output.count("no-such-library.so") == 3, output
