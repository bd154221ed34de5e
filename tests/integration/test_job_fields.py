"""A job answers what its submitter chose. The wire models map to the domain by name
(``api/schemas/jobs.py``), so a field added to ``JobCreate`` and ``JobOut`` under a
name the domain does not use would come back as its default: every field both models
have is sent here and must come back as sent, from the fast submit path and the route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from jobyard.api.schemas.jobs import JobCreate, JobOut
from tests.conftest import LiveServer, ServicesFactory

#: fields of both models that name other objects (a model, an environment, folders),
#: covered with those objects in test_registry.py, test_folders.py, test_model_jobs.py
NAMES_OTHER_OBJECTS = {"model", "environment", "input_folder", "output_folder", "role_bindings"}

CHOSEN: dict[str, Any] = {
    "entrypoint": "echo chosen",
    "name": "fields",
    "description": "every field",
    "job_type": "check",
    "priority": "high",
    "parameters": {"a": [1, {"b": None}]},
    "metadata": {"team": "api"},
    "env": {"GREETING": "hi"},
    "timeout_s": 42.5,
    "scheduled_at": "2030-01-02T03:04:05Z",
    "submission_id": "fields-1",
    "continue_on_error": True,
    "max_attempts": 3,
    "retry_on": ["timed_out"],
}


@pytest.fixture
def idle(make_services: ServicesFactory, serve: Any) -> LiveServer:
    """A server whose dispatcher does not run: submitted jobs stay as submitted."""
    server: LiveServer = serve(make_services(start=False))
    return server


def _same(sent: Any, answered: Any) -> bool:
    if isinstance(sent, str) and sent.endswith("Z") and isinstance(answered, str):
        return datetime.fromisoformat(sent) == datetime.fromisoformat(answered)
    return bool(sent == answered)


def test_every_field_a_job_answers_comes_back_as_sent(idle: LiveServer) -> None:
    both = set(JobCreate.model_fields) & set(JobOut.model_fields)
    assert both - NAMES_OTHER_OBJECTS == set(CHOSEN), "a new job field: add it to CHOSEN"
    auth = {"Authorization": f"Bearer {idle.admin_key}"}
    fast = {k: v for k, v in CHOSEN.items() if k != "submission_id"}  # the fast path's
    for body in (CHOSEN, fast):
        created = httpx.post(f"{idle.url}/v1/jobs", json=body, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        read = httpx.get(f"{idle.url}/v1/jobs/{created.json()['id']}", headers=auth, timeout=30)
        for answer in (created.json(), read.json()):
            wrong = {k: answer[k] for k, v in body.items() if not _same(v, answer[k])}
            assert not wrong, wrong
