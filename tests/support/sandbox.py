"""Whether this host can run jobs in the sandbox (bubblewrap, root, namespaces)."""

from __future__ import annotations

import os
import shutil

import pytest


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
