"""The Prediction API (spec 004): the tutorial's curl sequence replayed with httpx, job
CRUD, setup on the fly, organisation scope, and a Prediction API job run natively."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from jobyard.api.compat import prediction_mapping as mapping
from jobyard.domain.auth import Role
from jobyard.domain.definitions import JobDefinition
from jobyard.domain.registry import InputRole, ModelKind, ModelVersion
from jobyard.service.definitions import DefinitionSpec
from jobyard.service.submission import RoleBinding
from tests.conftest import LiveServer

pytestmark = pytest.mark.compat

SPEC_ORGANISATION = "77777777-7777-7777-7777-777777777777"
SPEC_SOURCE_ID = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
SENSOR = "5e1150a0-0000-4000-8000-000000000001"
VERSION_BODY: dict[str, Any] = {
    "version": "1.0.0",
    "input_roles": [
        {"role": "temperature", "input_kind": "sensor", "metric": "celsius", "required": True}
    ],
    "output_roles": [{"role": "prediction", "metric": "celsius", "unit": "°C", "required": True}],
}


@pytest.fixture
def api(live: LiveServer) -> LiveServer:
    """The live server (app.py mounts the Prediction API)."""
    return live


class Api:
    """httpx calls with ``Authorization: Bearer <key>`` and ``Content-Type: application/json``."""

    def __init__(self, live: LiveServer, key: str | None) -> None:
        self.url = live.url
        self.headers = {"Content-Type": "application/json"}
        if key is not None:
            self.headers["Authorization"] = f"Bearer {key}"

    def __call__(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=30)


def _admin(live: LiveServer) -> Api:
    return Api(live, live.admin_key)


def _other_organisation(live: LiveServer) -> Api:
    runtime = live.services
    runtime.auth.store.ensure_tenant("other", "Other", runtime.clock.now())
    _, key = runtime.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    return Api(live, key)


def _source_and_version(call: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps 1 and 2 of the tutorial."""
    r = call(
        "POST",
        "/api/v1/sources",
        {
            "name": "mildew-predictor",
            "description": "Predicts the risk of mildew from the temperature",
            "expectedintervalminutes": 60,
            "retention_hours": 720,
        },
    )
    assert r.status_code == 201, r.text
    source = r.json()
    r = call("POST", "/api/v1/source_versions", {"source_id": source["id"], **VERSION_BODY})
    assert r.status_code == 201, r.text
    return source, r.json()


def _setup(call: Api, source_id: str, name: str = "Job A") -> dict[str, Any]:
    r = call(
        "POST",
        "/api/v1/jobs/setup",
        {
            "organisation_id": "default",
            "source": {"id": source_id},
            "job": {"name": name, "active": True, "organisation_id": None},
            "role_bindings": [{"role": "temperature", "input_id": SENSOR, "input_type": "sensor"}],
        },
    )
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


def test_tutorial_curl_sequence(api: LiveServer) -> None:
    call = _admin(api)
    source, version = _source_and_version(call)
    assert source["organisation_id"] == "default" and source["name"] == "mildew-predictor"
    assert (source["expectedintervalminutes"], source["retention_hours"]) == (60, 720)
    assert version["source_id"] == source["id"] and version["version"] == "1.0.0"
    assert version["input_roles"] == [
        {"role": "temperature", "input_kind": "sensor", "metric": "celsius", "required": True}
    ]
    assert version["output_roles"] == VERSION_BODY["output_roles"]
    assert "no code attached" in version["entrypoint"]

    # the tutorial's placeholder source id is nobody's source; versions are immutable
    r = call("POST", "/api/v1/source_versions", {"source_id": SPEC_SOURCE_ID, **VERSION_BODY})
    assert r.status_code == 404, r.text
    r = call("POST", "/api/v1/source_versions", {"source_id": source["id"], **VERSION_BODY})
    assert r.status_code == 409 and "immutable" in r.json()["message"]

    # step 4 as printed: no Authorization header, the tutorial's organisation, role "temp"
    example = {
        "organisation_id": SPEC_ORGANISATION,
        "source": {"id": source["id"]},
        "job": {"name": "Job A"},
        "role_bindings": [{"role": "temp", "input_id": SENSOR, "input_type": "sensor"}],
    }
    assert Api(api, None)("POST", "/api/v1/jobs/setup", example).status_code == 401
    r = call("POST", "/api/v1/jobs/setup", example)
    assert r.status_code == 404 and SPEC_ORGANISATION in r.json()["message"]
    r = call("POST", "/api/v1/jobs/setup", {**example, "organisation_id": "default"})
    assert r.status_code == 422 and "'temp'" in r.json()["message"]  # unknown role
    r = call(
        "POST", "/api/v1/jobs/setup", {**example, "organisation_id": "default", "role_bindings": []}
    )
    assert r.status_code == 422 and "temperature" in r.json()["message"]  # required role

    job = _setup(call, source["id"])
    assert job["name"] == "Job A" and job["active"] is True
    assert job["organisation_id"] == "default"
    assert (job["source_id"], job["source_version_id"]) == (source["id"], version["id"])
    assert job["role_bindings"] == [
        {"role": "temperature", "input_id": SENSOR, "input_type": "sensor"}
    ]
    assert call("GET", "/api/v1/jobs").json() == [job]
    assert "/api/v1/jobs/setup" in call("GET", "/openapi.json").json()["paths"]


def test_job_crud_and_the_job_runs(api: LiveServer) -> None:
    call = _admin(api)
    source, _ = _source_and_version(call)
    job = _setup(call, source["id"])
    path = f"/api/v1/jobs/{job['id']}"
    assert call("GET", path).json() == job

    # the Prediction API job is a jobyard definition: run it through the native API
    r = call("POST", f"/v1/definitions/{job['id']}/run")
    assert r.status_code == 201, r.text
    with api.client() as c:
        run = c.wait(r.json()["id"], timeout=60)
        assert run.status == "succeeded", run.message
        assert run.parameters == {"temperature": SENSOR}
        assert "source mildew-predictor version 1.0.0: no code attached" in c.logs(run.id)
    assert call("GET", path).json()["last_job_id"] == run.id

    r = call("PUT", path, {"name": "Job A (paused)", "active": False})
    assert r.status_code == 200, r.text
    updated = r.json()
    assert (updated["name"], updated["active"]) == ("Job A (paused)", False)
    assert updated["role_bindings"] == job["role_bindings"]  # left out: kept
    assert call("GET", "/api/v1/jobs").json() == [updated]
    assert call("POST", f"/v1/definitions/{job['id']}/run").status_code == 409  # inactive

    # a fetched job can be sent back with changes
    r = call("PUT", path, {**updated, "active": True, "schedule": "*/15 * * * *"})
    assert r.status_code == 200, r.text
    assert r.json()["schedule"] == "*/15 * * * *" and r.json()["next_run_at"] is not None
    r = call("PUT", path, {"role_bindings": []})
    assert r.status_code == 422 and "temperature" in r.json()["message"]

    assert call("DELETE", path).status_code == 204
    assert call("GET", path).status_code == 404
    assert call("DELETE", path).status_code == 404
    assert call("GET", "/api/v1/jobs").json() == []


def test_setup_creates_source_and_version_on_the_fly(api: LiveServer) -> None:
    call = _admin(api)
    r = call("POST", "/v1/folders", {"name": "readings"})
    assert r.status_code == 201, r.text
    folder_id = r.json()["id"]
    body: dict[str, Any] = {
        "organisation_id": "default",
        "source": {"name": "frost-predictor", "expected_interval_minutes": 30},
        "source_version": {
            "version": "2.0.0",
            "input_roles": [
                {"role": "temperature", "input_kind": "sensor"},
                {"role": "history", "input_kind": "folder"},
                {"role": "humidity", "input_kind": "sensor", "required": False},
            ],
            "output_roles": [{"role": "frost", "unit": "%"}],
            "entrypoint": "ls input/history > /dev/null && echo frost",
        },
        "job": {"name": "Job F", "active": True},
        "role_bindings": [{"role": "temperature", "input_id": SENSOR, "input_type": "sensor"}],
    }
    # a failed setup leaves nothing behind: the same request can be sent again
    r = call("POST", "/api/v1/jobs/setup", body)
    assert r.status_code == 422 and "history" in r.json()["message"]
    assert call("GET", "/v1/models/frost-predictor").status_code == 404

    body["role_bindings"].append(
        {"role": "history", "input_id": "readings", "input_type": "folder"}
    )
    r = call("POST", "/api/v1/jobs/setup", body)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["role_bindings"] == [
        {"role": "temperature", "input_id": SENSOR, "input_type": "sensor"},
        {"role": "history", "input_id": folder_id, "input_type": "folder"},
    ]
    model = call("GET", f"/v1/models/{job['source_id']}").json()
    assert (model["name"], model["expected_interval_minutes"]) == ("frost-predictor", 30)
    assert [v["id"] for v in model["versions"]] == [job["source_version_id"]]

    # the version exists now: a second "new" 2.0.0 is refused, naming it by id works
    assert call("POST", "/api/v1/jobs/setup", body).status_code == 409
    by_id = {
        **body,
        "source": None,
        "source_version": None,
        "job": {"name": "Job G", "source_version_id": job["source_version_id"]},
    }
    r = call("POST", "/api/v1/jobs/setup", by_id)
    assert r.status_code == 201 and r.json()["source_id"] == job["source_id"], r.text
    r = call("POST", "/api/v1/jobs/setup", {**by_id, "job": {"name": "x", "organisation_id": "o"}})
    assert r.status_code == 422 and "job.organisation_id" in r.json()["message"]

    run = call("POST", f"/v1/definitions/{job['id']}/run").json()
    with api.client() as c:
        assert c.wait(run["id"], timeout=60).status == "succeeded"
        assert "frost" in c.logs(run["id"])


def test_setup_errors_name_the_request_fields_and_store_nothing(api: LiveServer) -> None:
    call = _admin(api)
    source, version = _source_and_version(call)
    other = call("POST", "/api/v1/sources", {"name": "other-source"}).json()
    org = {"organisation_id": "default"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"job": {"name": "x"}}, 422, "job.source_id: "),
        ({"source": {}, "job": {"name": "x"}}, 422, "source: "),
        ({"job": {"name": "x", "source_id": "nope"}}, 404, "source nope does not exist"),
        (
            {"job": {"name": "x", "source_version_id": "nope"}},
            404,
            "source version nope does not exist",
        ),
        (
            {"source": {"id": source["id"]}, "job": {"name": "x", "source_id": other["id"]}},
            422,
            "source.id, job.source_id: ",
        ),
        (
            {"job": {"name": "x", "source_id": other["id"], "source_version_id": version["id"]}},
            422,
            "job.source_version_id: ",
        ),
        (
            {"source_version": VERSION_BODY, "job": {"name": "x", "source_id": source["id"]}},
            409,
            "",
        ),
        (
            {
                "source_version": VERSION_BODY,
                "job": {"name": "x", "source_id": source["id"], "source_version_id": "v"},
            },
            422,
            "job.source_version_id: ",
        ),
        ({"source": {"name": "brand-new"}, "job": {"name": "x"}}, 422, "source_version: "),
        (
            {"source": {"name": "brand-new"}, "source_version": VERSION_BODY, "job": {"name": "x"}},
            422,
            "role_bindings: ",
        ),
    ]
    for body, code, message in cases:
        r = call("POST", "/api/v1/jobs/setup", {**org, **body})
        assert r.status_code == code and r.json()["message"].startswith(message), (body, r.text)
    assert call("GET", "/v1/models/brand-new").status_code == 404
    assert call("GET", "/api/v1/jobs").json() == []
    assert [v["id"] for v in call("GET", f"/v1/models/{source['id']}").json()["versions"]] == [
        version["id"]
    ]


def test_another_organisation_sees_nothing(api: LiveServer) -> None:
    call = _admin(api)
    source, version = _source_and_version(call)
    job = _setup(call, source["id"])
    other = _other_organisation(api)

    assert other("GET", "/api/v1/jobs").json() == []
    for method in ("GET", "PUT", "DELETE"):
        body = {"active": False} if method == "PUT" else None
        assert other(method, f"/api/v1/jobs/{job['id']}", body).status_code == 404
    r = other(
        "POST",
        "/api/v1/jobs/setup",
        {"organisation_id": "default", "source": {"id": source["id"]}, "job": {"name": "steal"}},
    )
    assert r.status_code == 404 and r.json()["message"] == "organisation default does not exist"
    own = {"organisation_id": "other", "job": {"name": "steal"}}
    for job_part in ({"source_id": source["id"]}, {"source_version_id": version["id"]}):
        r = other("POST", "/api/v1/jobs/setup", {**own, "job": {"name": "steal", **job_part}})
        assert r.status_code == 404, r.text
    r = other("POST", "/api/v1/source_versions", {"source_id": source["id"], **VERSION_BODY})
    assert r.status_code == 404

    # its own source of the same name is its own business
    r = other("POST", "/api/v1/sources", {"name": "mildew-predictor"})
    assert r.status_code == 201 and r.json()["organisation_id"] == "other"
    assert call("GET", "/api/v1/jobs").json() == [job]


def test_update_carries_every_definition_setting() -> None:
    """``updated_spec`` with no changes keeps every setting of the stored definition (a
    field added to DefinitionSpec and not mapped there makes this fail)."""
    from jobyard.domain.priorities import Priority

    now = datetime.now(UTC)
    d = JobDefinition(
        id="d",
        tenant_id="t",
        name="n",
        description="about",
        model_version_id="v",
        role_bindings=({"role": "r", "value": 3},),
        default_parameters={"p": 1},
        environment_id="e",
        output_folder_id="f",
        priority=Priority.HIGH,
        timeout_s=9.0,
        active=False,
        schedule="*/5 * * * *",
        max_attempts=3,
        retry_on=("failed",),
        notifications={"emails": ["a@b.c"]},
        created_at=now,
        updated_at=now,
    )
    spec = mapping.updated_spec(d, mapping.PredictionJobUpdate(), "v")
    expected = {
        "name": "n",
        "model": "v",
        "description": "about",
        "role_bindings": (RoleBinding(role="r", value=3),),
        "parameters": {"p": 1},
        "environment": "e",
        "output_folder": "f",
        "priority": Priority.HIGH,
        "timeout_s": 9.0,
        "active": False,
        "schedule": "*/5 * * * *",
        "max_attempts": 3,
        "retry_on": ("failed",),
        "notifications": {"emails": ["a@b.c"]},
    }
    assert {f.name for f in dataclasses.fields(DefinitionSpec)} == set(expected)
    assert {k: getattr(spec, k) for k in expected} == expected


def test_role_bindings_round_trip() -> None:
    """What GET reports as ``input_type`` binds the same way when sent back."""
    now = datetime.now(UTC)
    version = ModelVersion(
        id="v",
        tenant_id="t",
        model_id="m",
        model_name="m",
        version="1",
        description=None,
        kind=ModelKind.COMMAND,
        entrypoint="true",
        artifact_sha256=None,
        artifact_name=None,
        artifact_size=None,
        artifact_is_archive=False,
        parameters_schema=None,
        default_parameters={},
        default_environment_id=None,
        deprecated=False,
        created_at=now,
        input_roles=(
            InputRole(role="t", kind="sensor"),
            InputRole(role="f", kind="folder"),
            InputRole(role="x"),
        ),
        output_roles=(),
    )
    sent = [
        {"role": "t", "input_id": "s1", "input_type": "sensor"},
        {"role": "f", "input_id": "raw-value", "input_type": "anything"},
        {"role": "x", "input_id": "folder-1", "input_type": "folder"},
    ]
    bindings = mapping.bindings_in([mapping.JobRoleBinding.model_validate(b) for b in sent])
    assert bindings == (
        RoleBinding(role="t", value="s1"),
        RoleBinding(role="f", value="raw-value"),
        RoleBinding(role="x", folder="folder-1"),
    )
    stored = (
        {"role": "t", "value": "s1"},
        {"role": "f", "value": "raw-value"},
        {"role": "x", "folder_id": "folder-1"},
    )
    d = JobDefinition(
        id="d",
        tenant_id="t",
        name="n",
        description=None,
        model_version_id="v",
        role_bindings=stored,
        created_at=now,
        updated_at=now,
    )
    reported = [b.model_dump() for b in mapping.bindings_out(d, version)]
    assert reported == [
        {"role": "t", "input_id": "s1", "input_type": "sensor"},
        {"role": "f", "input_id": "raw-value", "input_type": "value"},
        {"role": "x", "input_id": "folder-1", "input_type": "folder"},
    ]
    assert (
        mapping.bindings_in([mapping.JobRoleBinding.model_validate(b) for b in reported])
        == bindings
    )
