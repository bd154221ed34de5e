"""Acceptance-test fixtures: real ``jobyard serve`` processes (see serverproc.py)."""

from tests.acceptance.hooks import pytest_runtest_makereport  # noqa: F401
from tests.acceptance.serverproc import server, start_server  # noqa: F401
