"""Numbered pages over the cursor-paged job list (used by the compat APIs), on both
databases, with native pages small enough that a page spans several of them."""

from __future__ import annotations

import sys

import pytest

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobFilter, JobSpec
from jobyard.domain.states import JobState
from jobyard.service import jobs as job_service
from tests.conftest import ServicesFactory

ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


def test_pages_by_offset_match_the_full_list(
    make_services: ServicesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(start=False)
    ids = [
        services.jobs.submit(ADMIN, JobSpec(argv=(sys.executable, "-c", "pass"), name=f"j{i}"))[
            0
        ].id
        for i in range(7)
    ]
    for i in ids[1::3]:
        services.jobs.cancel(ADMIN, i)
    newest_first = services.jobs.list_jobs(ADMIN, JobFilter(), limit=50).items
    assert sorted(j.id for j in newest_first) == sorted(ids)
    queued = [j.id for j in newest_first if j.state is JobState.QUEUED]
    assert len(queued) == 5

    monkeypatch.setattr(job_service, "MAX_LIST_LIMIT", 2)  # every walk crosses cursors
    everything = [j.id for j in newest_first]
    for flt, expected in (
        (JobFilter(), everything),
        (JobFilter(states=frozenset({JobState.QUEUED})), queued),
    ):
        for offset in range(len(expected) + 2):
            for size in (1, 2, 3, 5):
                page = services.jobs.page_at(ADMIN, flt, offset=offset, size=size)
                assert [j.id for j in page.items] == expected[offset : offset + size]
                assert page.total == len(expected)
                assert page.by_status == {"queued": 5, "cancelled": 2}
