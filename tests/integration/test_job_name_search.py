"""The jobs list's text search on the name (the dashboard's "name contains" filter), on
SQLite and PostgreSQL: any case, and ``%``, ``_`` and ``\\`` are plain characters."""

from __future__ import annotations

from datetime import UTC, datetime

from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobFilter, JobSpec
from tests.conftest import ServicesFactory

LATER = datetime(2099, 1, 1, tzinfo=UTC)  # none of the jobs runs


def test_name_contains_is_literal_and_ignores_case(make_services: ServicesFactory) -> None:
    services = make_services(run_dispatcher=False)
    caller = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)
    names = ["Nightly_Report", "nightlyXreport", "50% sample", "500 sample", "back\\slash", None]
    for name in names:
        services.jobs.submit(caller, JobSpec(entrypoint="true", name=name, scheduled_at=LATER))

    def found(text: str) -> list[str]:
        page = services.jobs.list_jobs(caller, JobFilter(name_contains=text), limit=50)
        assert sum(page.by_status.values()) == len(page.items)  # the counts filter too
        return sorted(j.spec.name or "" for j in page.items)

    assert found("nightly_") == ["Nightly_Report"]
    assert found("NIGHTLY") == ["Nightly_Report", "nightlyXreport"]
    assert found("0%") == ["50% sample"]
    assert found("\\") == ["back\\slash"]
    assert found("nothing") == []
