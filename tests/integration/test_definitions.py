"""Job definitions, cron schedules under a controlled clock, retention and overdue models."""

from __future__ import annotations

import httpx
import pytest

from jobyard.clock import ManualClock
from jobyard.sdk import errors as sdk_errors
from tests.conftest import LiveServer, ServicesFactory


@pytest.fixture
def clocked(make_services: ServicesFactory, serve) -> tuple[LiveServer, ManualClock]:
    clock = ManualClock()
    live = serve(make_services(clock=clock, upkeep_interval_s=3600.0))
    return live, clock


def _setup_model(client) -> None:
    client.create_model("daily", expected_interval_minutes=10, retention_hours=1)
    client.push_version(
        "daily", "1.0", entrypoint="echo scored $JOBYARD_JOB_ID", input_roles=["site:text:required"]
    )


def test_cron_definition_fires_on_time(clocked: tuple[LiveServer, ManualClock]) -> None:
    live, clock = clocked
    with live.client() as c:
        _setup_model(c)
        with pytest.raises(sdk_errors.InvalidInput) as info:
            c.create_definition(
                "bad",
                "daily:1.0",
                role_bindings=[{"role": "site", "value": "a"}],
                schedule="every day",
            )
        assert "schedule" in info.value.message
        with pytest.raises(sdk_errors.InvalidInput) as info:
            c.create_definition("unbound", "daily:1.0", schedule="*/5 * * * *")
        assert "site" in info.value.message
        d = c.create_definition(
            "every5",
            "daily:1.0",
            role_bindings=[{"role": "site", "value": "paris"}],
            schedule="*/5 * * * *",
        )
        assert d.next_run_at is not None
        live.services.upkeep.tick()
        assert c.list(limit=10).items == []  # not yet
        clock.advance(5 * 60 + 1)
        live.services.upkeep.tick()
        live.services.upkeep.tick()  # the same slot fires once
        jobs = c.list(limit=10).items
        assert len(jobs) == 1
        assert jobs[0].definition_id == d.id and jobs[0].submitted_by == "schedule:every5"
        assert jobs[0].parameters == {"site": "paris"}
        assert c.wait(jobs[0].id, timeout=30).status == "succeeded"
        clock.advance(5 * 60)
        live.services.upkeep.tick()
        assert len(c.list(limit=10).items) == 2
        manual = c.run_definition(d.id, {"extra": 1})
        assert manual.definition_id == d.id and manual.parameters["extra"] == 1
        assert c.definition(d.id).last_job_id == manual.id


def test_overdue_models_and_retention(clocked: tuple[LiveServer, ManualClock]) -> None:
    live, clock = clocked
    headers = {"Authorization": f"Bearer {live.admin_key}"}
    with live.client() as c:
        _setup_model(c)

        def overdue() -> list[dict]:  # type: ignore[type-arg]
            url = live.url + "/v1/monitoring/overdue-models"
            items: list[dict] = httpx.get(url, headers=headers).json()["items"]  # type: ignore[type-arg]
            return items

        assert overdue() == []
        clock.advance(11 * 60)
        assert [o["model"] for o in overdue()] == ["daily"]
        job = c.submit(model="daily:1.0", role_bindings=[{"role": "site", "value": "x"}])
        assert c.wait(job.id, timeout=30).status == "succeeded"
        assert overdue() == []
        clock.advance(30 * 60)
        assert live.services.upkeep.purge_expired() == 0  # kept for retention_hours=1
        clock.advance(31 * 60)
        assert live.services.upkeep.purge_expired() == 1
        with pytest.raises(sdk_errors.NotFound):
            c.get(job.id)
        plain = c.submit("true")  # jobs without a retention setting stay
        assert c.wait(plain.id, timeout=30).status == "succeeded"
        clock.advance(10 * 3600)
        assert live.services.upkeep.purge_expired() == 0
        assert c.get(plain.id).status == "succeeded"
