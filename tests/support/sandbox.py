"""Whether this host can run jobs in the sandbox (bubblewrap, root, namespaces), and a
job's launch spec for the sandbox tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jobyard.executors.base import LaunchSpec


def require_sandbox() -> None:
    """Skip with the reason when the host cannot sandbox jobs; fail instead where the
    sandbox is required (``JOBYARD_REQUIRE_SANDBOX=1``, as in CI)."""
    reason = ""
    if os.geteuid() != 0:
        reason = "the job sandbox needs the tests to run as root"
    elif shutil.which("bwrap") is None:
        reason = "bubblewrap is not installed (Debian package 'bubblewrap')"
    if not reason:
        return
    if os.environ.get("JOBYARD_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"JOBYARD_REQUIRE_SANDBOX=1 but {reason}")
    pytest.skip(reason)


def job_spec(root: Path, name: str, argv: list[str], **kw: int) -> LaunchSpec:
    """A launch spec for ``argv`` in ``root/name/work`` (made, owned by ``nobody``, the
    sandbox's default user), with its log and status file beside it."""
    work = root / name / "work"
    work.mkdir(parents=True)
    os.chown(work, 65534, 65534)
    return LaunchSpec(
        job_id=name,
        attempt=1,
        entrypoint=None,
        argv=tuple(argv),
        workdir=work,
        log_path=root / name / "log",
        env={"PATH": "/usr/bin:/bin"},
        status_path=root / name / "exit",
        **kw,  # type: ignore[arg-type]
    )
