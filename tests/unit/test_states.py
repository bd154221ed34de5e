"""The transition table, pair by pair."""

from __future__ import annotations

import itertools

import pytest

from jobyard import errors
from jobyard.domain.states import TERMINAL, JobState, can_transition, check_transition

S = JobState
ALLOWED = {
    (S.SCHEDULED, S.QUEUED), (S.SCHEDULED, S.CANCELLED),
    (S.QUEUED, S.STARTING), (S.QUEUED, S.CANCELLED),
    (S.STARTING, S.RUNNING), (S.STARTING, S.FAILED), (S.STARTING, S.CANCELLING),
    (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.TIMED_OUT),
    (S.RUNNING, S.CANCELLING),
    (S.CANCELLING, S.CANCELLED),
    (S.FAILED, S.QUEUED), (S.TIMED_OUT, S.QUEUED),
}  # fmt: skip


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_every_pair(old: JobState, new: JobState) -> None:
    expected = (old, new) in ALLOWED
    assert can_transition(old, new) is expected
    if expected:
        check_transition(old, new)
    else:
        with pytest.raises(errors.InvalidTransition) as info:
            check_transition(old, new)
        assert old.value in info.value.message and new.value in info.value.message


def test_succeeded_and_cancelled_are_final() -> None:
    for state in (S.SUCCEEDED, S.CANCELLED):
        assert state in TERMINAL
        assert not any(can_transition(state, other) for other in S)
