"""The short form of ``bench/faults`` scenario 1 (``kill -9`` of the server, SQLite):
a few rounds of the suite's own code, and the invariants that must hold."""

from __future__ import annotations

import pytest
from bench.faults.common import Outcome
from bench.faults.kill9 import DownEnd, finished_while_down, run_kill9

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]


@pytest.fixture(scope="module")
def kill9() -> Outcome:
    return run_kill9("sqlite", 3, between=(0.3, 1.5), settle_s=45)


def test_every_accepted_job_exists_after_the_restarts_and_ends(kill9: Outcome) -> None:
    accepted = next(f for f in kill9.figures if f.figure == "jobs accepted (2xx)")
    assert int(accepted.value) > 0
    assert kill9.data["lost"] == []
    assert kill9.data["unfinished"] == []


def test_no_job_runs_twice_at_the_same_time(kill9: Outcome) -> None:
    assert kill9.data["marker_runs"] > 0
    assert kill9.data["overlaps"] == {}


def test_the_server_answers_after_every_restart(kill9: Outcome) -> None:
    assert len(kill9.data["answer_s"]) == 3
    assert len(kill9.data["recovered_s"]) == 3  # the lost attempts were failed or requeued
    assert kill9.data["bad_5xx"] == []


def test_the_database_is_intact(kill9: Outcome) -> None:
    assert kill9.data["integrity"] == "ok"


@pytest.fixture(scope="module")
def once() -> DownEnd:
    return finished_while_down(max_attempts=1)


@pytest.fixture(scope="module")
def with_retries() -> DownEnd:
    return finished_while_down(max_attempts=2)


def test_a_job_that_finished_while_the_server_was_down_still_exists(once: DownEnd) -> None:
    assert once.job["status"] in {"succeeded", "failed"}
    assert len(once.runs) == 1 and once.runs[0].ended


def test_the_restart_keeps_the_outcome_of_a_job_that_finished_while_down(once: DownEnd) -> None:
    assert (once.job["status"], once.job["exit_code"]) == ("succeeded", 0), once.job["message"]


def test_a_job_that_finished_while_down_does_not_run_again(with_retries: DownEnd) -> None:
    assert len(with_retries.runs) == 1, with_retries.runs
