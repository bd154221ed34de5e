"""Acceptance-test plumbing: attach the logs of the real ``jobyard serve`` processes a test
started to its failure report (setup, call or teardown)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

#: log files of the servers a test started; filled by the ``jobyard_server`` fixture
SERVER_LOGS = pytest.StashKey[list[Path]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for path in item.stash.get(SERVER_LOGS, []):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"(cannot read {path}: {exc})"
        report.sections.append((f"jobyard serve log {path}", text or "(empty)"))
