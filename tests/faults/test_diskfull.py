"""The short form of ``bench/faults`` scenario 4 (the data directory on a full 8 MB
tmpfs): the server stays up, refuses writes with a retryable error, recovers when space
returns, and SQLite's integrity check passes. Needs root (mount)."""

from __future__ import annotations

import pytest
from bench.faults.common import Outcome
from bench.faults.diskfull import run_diskfull, why_not

pytestmark = [
    pytest.mark.faults,
    pytest.mark.acceptance,
    pytest.mark.skipif(why_not() is not None, reason=f"disk-full scenario: {why_not()}"),
]


@pytest.fixture(scope="module")
def disk() -> Outcome:
    return run_diskfull(full_s=4, recover_s=30)


def test_the_server_stays_up_and_answers_healthz(disk: Outcome) -> None:
    assert disk.data["alive_while_full"] and disk.data["alive_after"]
    assert set(disk.data["healthz"]) == {"200"}


def test_submits_while_full_are_refused_with_a_retryable_status(disk: Outcome) -> None:
    assert disk.data["submits"], "no submit was made while the disk was full"
    for label in disk.data["submits"]:
        assert label.startswith(("503", "507")), disk.data["submit_samples"]


def test_the_server_recovers_when_space_returns(disk: Outcome) -> None:
    assert disk.data["recovered_s"] is not None
    assert disk.data["after_job"] == "succeeded"
    assert set(disk.data["readyz_after"]) == {"200"}


def test_the_database_is_intact(disk: Outcome) -> None:
    assert disk.data["integrity"] == "ok"


def test_readyz_says_the_node_cannot_write(disk: Outcome) -> None:
    assert set(disk.data["readyz"]) and all(c.startswith("503") for c in disk.data["readyz"])


def test_submits_while_full_say_that_the_disk_is_full(disk: Outcome) -> None:
    for label, sample in disk.data["submit_samples"].items():
        assert label.startswith("507"), disk.data["submit_samples"]
        assert "disk is full" in sample, sample


def test_a_job_whose_log_cannot_grow_ends_with_a_clear_error(disk: Outcome) -> None:
    end = disk.data["writer_end"]
    assert end is not None and end["status"] == "failed", end
    assert "the disk that holds its log is full" in end["message"], end["message"]
