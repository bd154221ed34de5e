"""Models, immutable versions with artifacts, and environments over real HTTP (SDK and
CLI), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from typer.testing import CliRunner

from jobyard import Client
from jobyard.cli import exitcodes
from jobyard.cli.main import app
from jobyard.domain.auth import Principal, Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import JobState
from jobyard.errors import InvalidInput
from jobyard.errors import NotFound as ServiceNotFound
from jobyard.sdk.errors import Conflict, NotFound, PayloadTooLarge
from jobyard.sdk.errors import InvalidInput as SdkInvalidInput
from jobyard.service.registry import EnvironmentSpec
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

ADMIN = Principal(tenant_id="default", key_id="k", key_name="tester", role=Role.ADMIN)


@pytest.fixture
def idle(make_services: ServicesFactory, serve: Callable[[Services], LiveServer]) -> LiveServer:
    """A server whose dispatcher does not run: inserted jobs stay unfinished."""
    return serve(make_services(start=False))


@pytest.fixture
def c(idle: LiveServer) -> Iterator[Client]:
    with idle.client() as client:
        yield client


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('scored')")])
    path.write_text(nbformat.writes(nb))
    return path


def _note(path: Path) -> Path:
    path.write_text(json.dumps({"name": "n", "paragraphs": [{"text": "%sh echo hi"}]}))
    return path


def _add_job(services: Services, **spec: object) -> None:
    services.jobs.store.insert(
        tenant_id="default",
        spec=JobSpec(entrypoint="true", **spec),  # type: ignore[arg-type]
        state=JobState.QUEUED,
        sort_key=0.0,
        now=services.clock.now(),
        request_hash=None,
        message="test",
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_crud(c: Client) -> None:
    m = c.create_model("churn", description="d", expected_interval_minutes=60, retention_hours=720)
    assert (m.name, m.expected_interval_minutes, m.retention_hours) == ("churn", 60, 720)
    with pytest.raises(Conflict, match="already exists"):
        c.create_model("churn")
    with pytest.raises(SdkInvalidInput) as bad:
        c.create_model("no spaces")
    assert bad.value.status_code == 422 and bad.value.details["field"] == "name"
    with pytest.raises(SdkInvalidInput, match="retention_hours"):
        c.create_model("x", retention_hours=0)
    c.create_model("alpha")
    assert [x.name for x in c.models()] == ["alpha", "churn"]
    assert c.model(m.id).name == "churn"
    updated = c.update_model("churn", description="new", retention_hours=None)
    assert (updated.description, updated.retention_hours) == ("new", None)
    assert updated.expected_interval_minutes == 60
    resp = c._http.patch("/v1/models/churn", json={"name": "other"})
    assert resp.status_code == 422 and resp.json()["code"] == "VALIDATION_ERROR"
    c.delete_model("alpha")
    with pytest.raises(NotFound):
        c.model("alpha")


def test_push_every_kind_hash_and_download(c: Client, tmp_path: Path) -> None:
    c.create_model("churn")
    nb = _notebook(tmp_path / "score.ipynb")
    v1 = c.push_version(
        "churn",
        "1.0.0",
        nb,
        input_roles=["customers:csv:required"],
        output_roles=["scores:csv"],
        description="first",
    )
    assert v1.kind == "notebook" and v1.ref == "churn:1.0.0"
    assert v1.artifact is not None and v1.artifact.name == "score.ipynb"
    assert v1.artifact.sha256 == _sha(nb) and v1.artifact.size == nb.stat().st_size
    assert v1.entrypoint == "score.ipynb"
    assert [(r.role, r.kind, r.required) for r in v1.input_roles] == [("customers", "csv", True)]
    assert [(r.role, r.required) for r in v1.output_roles] == [("scores", False)]

    note = _note(tmp_path / "report.zpln")
    assert c.push_version("churn", "1.1.0", note).kind == "zeppelin"
    script = tmp_path / "train.py"
    script.write_text("print('train')\n")
    assert c.push_version("churn", "1.2.0", script).kind == "python"
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.py").write_text("print('main')\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    vz = c.push_version("churn", "2.0.0+build.1", src, entrypoint="pkg/main.py")
    assert (vz.kind, vz.entrypoint) == ("python", "pkg/main.py")
    assert vz.artifact is not None and vz.artifact.archive and vz.artifact.name == "proj.zip"
    cmd = c.push_version("churn", "3.0.0", entrypoint="echo hi")
    assert (cmd.kind, cmd.artifact) == ("command", None)
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 50)
    vc = c.push_version("churn", "3.1.0", data, entrypoint="wc -c data.bin")
    assert vc.kind == "command" and vc.artifact is not None

    # downloads: the same bytes, the hash in a header; zips hold the directory
    got = c.download_artifact("churn", "1.0.0", tmp_path / "dl.ipynb")
    assert got.read_bytes() == nb.read_bytes()
    assert c.download_artifact("churn", "3.1.0", tmp_path).read_bytes() == data.read_bytes()
    resp = c._http.get("/v1/models/churn/versions/1.0.0/artifact")
    assert resp.headers["X-Content-SHA256"] == _sha(nb)
    zipped = c.download_artifact("churn", "2.0.0+build.1", tmp_path / "z.zip")
    assert zipfile.ZipFile(zipped).namelist() == ["pkg/main.py"]
    with pytest.raises(NotFound, match="no artifact"):
        c.download_artifact("churn", "3.0.0", tmp_path / "none")

    versions = [v.version for v in c.versions("churn")]
    assert versions == ["3.1.0", "3.0.0", "2.0.0+build.1", "1.2.0", "1.1.0", "1.0.0"]
    detail = c.model("churn")
    assert [v.version for v in detail.versions] == versions
    assert detail.versions[-1].kind == "notebook"
    assert c.version("churn", "2.0.0+build.1").id == vz.id


def test_artifact_larger_than_one_mib(c: Client, tmp_path: Path) -> None:
    c.create_model("big")
    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    v = c.push_version("big", "1", data, entrypoint="ls -l weights.bin")
    assert v.artifact is not None and v.artifact.sha256 == _sha(data)
    assert c.download_artifact("big", "1", tmp_path / "back.bin").read_bytes() == data.read_bytes()


def test_upload_limits(
    make_services: ServicesFactory, serve: Callable[[Services], LiveServer], tmp_path: Path
) -> None:
    server = serve(make_services(start=False, max_upload_bytes=1024 * 1024))
    with server.client() as c:
        c.create_model("m")
        over = tmp_path / "over.bin"
        over.write_bytes(b"x" * (1024 * 1024 + 1))
        with pytest.raises(SdkInvalidInput, match="larger than the limit") as err:
            c.push_version("m", "1", over, entrypoint="true")
        assert err.value.status_code == 422
        far_over = tmp_path / "far.bin"
        far_over.write_bytes(b"x" * (2 * 1024 * 1024 + 1))
        with pytest.raises(PayloadTooLarge):
            c.push_version("m", "1", far_over, entrypoint="true")
        spec = {"version": "1", "entrypoint": "true", "description": "x" * (1024 * 1024)}
        resp = c._http.post("/v1/models/m/versions", json=spec)
        assert resp.status_code == 413 and resp.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert c.versions("m") == []
    blobs = Path(server.services.storage.root) / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]


def test_versions_are_immutable(c: Client, tmp_path: Path) -> None:
    c.create_model("churn")
    nb = _notebook(tmp_path / "score.ipynb")
    c.push_version("churn", "1.0.0", nb)
    with pytest.raises(Conflict) as err:
        c.push_version("churn", "1.0.0", nb)
    assert err.value.status_code == 409
    assert err.value.message == "model churn already has version 1.0.0; versions are immutable"
    with pytest.raises(Conflict):  # also without an artifact
        c.push_version("churn", "1.0.0", entrypoint="true")
    for method in ("PUT", "PATCH"):
        resp = c._http.request(method, "/v1/models/churn/versions/1.0.0", json={})
        assert resp.status_code == 405, method
    assert c.version("churn", "1.0.0").kind == "notebook"


def test_invalid_artifacts_and_specs(c: Client, tmp_path: Path) -> None:
    c.create_model("m")
    bad_nb = tmp_path / "bad.ipynb"
    bad_nb.write_text("{not json")
    cases: list[tuple[dict[str, object], str]] = [
        ({"path": bad_nb}, "not a valid Jupyter notebook"),
        ({"path": _note(tmp_path / "n.zpln"), "kind": "python"}, "needs a .py file"),
        ({"path": None, "kind": "notebook"}, "needs an artifact"),
        ({"path": None}, "needs an entrypoint"),
        ({"path": tmp_path / "n.zpln", "entrypoint": "other.zpln"}, "entrypoint"),
        ({"path": None, "entrypoint": "x", "input_roles": ["a", "a"]}, "defined twice"),
        ({"path": None, "entrypoint": "x", "output_roles": ["9bad"]}, "not a role name"),
    ]
    empty = tmp_path / "empty.zpln"
    empty.write_text(json.dumps({"name": "x"}))
    cases.append(({"path": empty}, "'paragraphs' list"))
    for kwargs, message in cases:
        path = kwargs.pop("path")
        with pytest.raises(SdkInvalidInput, match=message):
            c.push_version("m", "1", path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(SdkInvalidInput, match="version"):
        c.push_version("m", "-bad", entrypoint="true")

    def upload(content: bytes, spec: dict[str, object], archive: str = "true") -> httpx.Response:
        return c._http.post(
            "/v1/models/m/versions",
            data={"spec": json.dumps(spec), "archive": archive},
            files={"artifact": ("a.zip", content, "application/zip")},
        )

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.py", "x")
    resp = upload(evil.read_bytes(), {"version": "1", "kind": "python", "entrypoint": "x.py"})
    assert resp.status_code == 422 and "'..'" in resp.json()["message"]
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("run.py", "x")
    resp = upload(good.read_bytes(), {"version": "1", "kind": "python", "entrypoint": "nope.py"})
    assert resp.status_code == 422 and "not a file in the archive" in resp.json()["message"]
    resp = upload(b"plain", {"version": "1", "kind": "command", "entrypoint": "true"})
    assert resp.status_code == 422 and "not a zip" in resp.json()["message"]
    resp = upload(
        good.read_bytes(), {"version": "1", "kind": "python", "entrypoint": "run.py"}, "maybe"
    )
    assert resp.status_code == 422 and resp.json()["details"]["errors"][0]["field"] == "archive"
    resp = upload(good.read_bytes(), {"version": "1", "bogus": 1})
    assert resp.status_code == 422 and resp.json()["details"]["errors"][0]["field"] == "spec.bogus"
    resp = c._http.post(
        "/v1/models/m/versions", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 415
    resp = c._http.post(
        "/v1/models/m/versions", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422 and resp.json()["details"]["errors"][0]["field"] == "body"
    resp = c._http.post("/v1/models/m/versions", json={"version": "1", "kind": "shell"})
    assert resp.status_code == 422 and resp.json()["details"]["errors"][0]["field"] == "body.kind"
    assert c.versions("m") == []


def test_parameter_schema_defaults_and_check(idle: LiveServer, c: Client) -> None:
    c.create_model("m")
    schema = {
        "type": "object",
        "properties": {"threshold": {"type": "number", "maximum": 1}, "mode": {"type": "string"}},
        "required": ["threshold"],
    }
    with pytest.raises(SdkInvalidInput) as err:
        c.push_version("m", "1", entrypoint="true", parameters_schema={"type": "nope"})
    assert err.value.details["field"] == "parameters_schema"
    assert "parameters_schema is not a valid JSON Schema" in err.value.message
    with pytest.raises(SdkInvalidInput) as err:
        c.push_version(
            "m",
            "1",
            entrypoint="true",
            parameters_schema=schema,
            default_parameters={"threshold": 2},
        )
    assert err.value.details["field"] == "default_parameters.threshold"
    # defaults may leave required parameters to the job
    v = c.push_version(
        "m", "1", entrypoint="true", parameters_schema=schema, default_parameters={"mode": "fast"}
    )
    assert v.parameters_schema == schema and v.default_parameters == {"mode": "fast"}

    registry = idle.services.registry
    version = registry.get_version(ADMIN, "m", "1")
    assert registry.check_parameters(version, {"threshold": 0.5}) == {
        "mode": "fast",
        "threshold": 0.5,
    }
    assert registry.check_parameters(version, {"threshold": 0.5, "mode": "x"})["mode"] == "x"
    with pytest.raises(InvalidInput) as bad:
        registry.check_parameters(version, {"threshold": 1.5})
    assert bad.value.message == "parameters.threshold: 1.5 is greater than the maximum of 1"
    assert bad.value.details["field"] == "parameters.threshold"
    with pytest.raises(InvalidInput) as bad:
        registry.check_parameters(version, {})
    assert bad.value.details["field"] == "parameters.threshold"
    assert "required" in bad.value.message
    plain = registry.get_version(ADMIN, "m", "1")
    assert registry.check_parameters(plain, {"threshold": 0}) == {"mode": "fast", "threshold": 0}


def test_resolve_and_deprecate(idle: LiveServer, c: Client) -> None:
    registry = idle.services.registry
    c.create_model("m")
    c.create_model("empty")
    v1 = c.push_version("m", "1.0", entrypoint="true")
    v2 = c.push_version("m", "2.0", entrypoint="true")
    assert registry.resolve(ADMIN, "m:1.0").id == v1.id
    assert registry.resolve(ADMIN, "m").id == v2.id
    assert registry.resolve(ADMIN, v1.id).id == v1.id
    assert registry.resolve(ADMIN, f"{v1.model_id}:2.0").id == v2.id

    dep = c.deprecate_version("m", "2.0")
    assert c._http.post("/v1/models/m/versions/2.0/deprecate").json()["deprecated"]  # no body
    assert dep.deprecated and c.model("m").versions[0].deprecated
    assert registry.resolve(ADMIN, "m").id == v1.id  # newest that is not deprecated
    assert registry.resolve(ADMIN, "m:2.0").id == v2.id  # still runnable when named
    c.deprecate_version("m", "1.0")
    with pytest.raises(ServiceNotFound, match="no version that is not deprecated"):
        registry.resolve(ADMIN, "m")
    assert not c.deprecate_version("m", "1.0", deprecated=False).deprecated
    assert registry.resolve(ADMIN, "m").id == v1.id

    for bad in ("", "m:", ":1", "m:1:2", "bad name", "m:-x"):
        with pytest.raises(InvalidInput) as err:
            registry.resolve(ADMIN, bad)
        assert err.value.details["field"] == "model"
    for missing in ("m:9.9", "nope", "nope:1", "empty", "0b6c5a1e-0000-4000-8000-000000000000"):
        with pytest.raises(ServiceNotFound):
            registry.resolve(ADMIN, missing)


def test_delete_refused_while_jobs_reference_a_version(idle: LiveServer, c: Client) -> None:
    c.create_model("m")
    v1 = c.push_version("m", "1", entrypoint="true")
    c.push_version("m", "2", entrypoint="true")
    _add_job(idle.services, model_version_id=v1.id)
    _add_job(idle.services, model_version_id=v1.id)
    with pytest.raises(Conflict, match="2 job"):
        c.delete_version("m", "1")
    with pytest.raises(Conflict, match="2 job"):
        c.delete_model("m")
    c.delete_version("m", "2")
    assert [v.version for v in c.versions("m")] == ["1"]
    assert c.deprecate_version("m", "1").deprecated


def test_environments(idle: LiveServer, c: Client, tmp_path: Path) -> None:
    env = c.create_environment(
        "py-small",
        pip=["pandas==2.*", "requests[socks]>=2; python_version >= '3.8'"],
        env_vars={"REGION": "eu"},
        files={"conf/app.ini": "[app]\n", "./notes.txt": Path(__file__)},
        max_concurrent_jobs=1,
        memory_limit_mb=512,
    )
    assert env.env_vars == {"REGION": "eu"} and env.cpu_slots == 1 and env.network == "full"
    assert set(env.files) == {"conf/app.ini", "notes.txt"}
    assert env.files["notes.txt"] == Path(__file__).read_text()
    with pytest.raises(Conflict):
        c.create_environment("py-small")
    assert c.environment(env.id).name == "py-small"
    assert [e.name for e in c.environments()] == ["py-small"]

    updated = c.update_environment(
        "py-small", pip=["numpy"], memory_limit_mb=None, cpu_slots=2, network="none"
    )
    assert (
        updated.pip_requirements,
        updated.memory_limit_mb,
        updated.cpu_slots,
        updated.network,
    ) == (["numpy"], None, 2, "none")
    assert c.environment("py-small").network == "none"
    assert c.update_environment("py-small", cpu_slots=1).network == "none"  # kept
    assert c.create_environment("offline", network="none").network == "none"
    c.delete_environment("offline")
    assert updated.env_vars == {"REGION": "eu"}
    bad: list[tuple[dict[str, object], str]] = [
        ({"env_vars": {"JOBYARD_TOKEN": "x"}}, "env_vars.JOBYARD_TOKEN"),
        ({"env_vars": {"1X": "x"}}, "env_vars.1X"),
        ({"pip": ["-e ."]}, "pip_requirements[0]"),
        ({"pip": ["numpy", "--index-url=https://evil"]}, "pip_requirements[1]"),
        ({"pip": ["pandas --index-url x"]}, "pip_requirements[0]"),
        ({"pip": ["./local/pkg"]}, "pip_requirements[0]"),
        ({"pip": ["git+https://x/y"]}, "pip_requirements[0]"),
        ({"pip": [" "]}, "pip_requirements[0]"),
        ({"files": {"../x": "t"}}, "files.../x"),
        ({"files": {"/etc/passwd": "t"}}, "files./etc/passwd"),
        ({"cpu_slots": 0}, "cpu_slots"),
        ({"memory_limit_mb": 8}, "memory_limit_mb"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs"),
        ({"network": "host"}, "network"),
        ({"network": "None"}, "network"),
    ]
    for i, (kwargs, field) in enumerate(bad):
        with pytest.raises(SdkInvalidInput) as err:
            c.create_environment(f"e{i}", **kwargs)  # type: ignore[arg-type]
        assert err.value.details["field"] == field, kwargs
    with pytest.raises(SdkInvalidInput):
        c.update_environment("py-small", env_vars={"JOBYARD_X": "1"})
    with pytest.raises(SdkInvalidInput, match="network"):
        c.update_environment("py-small", network="bridge")
    with pytest.raises(InvalidInput, match="over the limit"):  # the service's 1 MiB limit
        idle.services.registry.create_environment(
            ADMIN, EnvironmentSpec(name="big", files={"a": "x" * 600_000, "b": "y" * 600_000})
        )
    assert c.environment("py-small").env_vars == {"REGION": "eu"}
    assert c.environment("py-small").network == "none"

    # a version's default environment is resolved by name to its id
    c.create_model("m")
    v = c.push_version("m", "1", entrypoint="true", default_environment="py-small")
    assert v.default_environment == env.id
    with pytest.raises(NotFound, match="default_environment"):
        c.push_version("m", "2", entrypoint="true", default_environment="nope")

    # an environment in use by an unfinished job cannot be deleted
    _add_job(idle.services, environment_id=env.id)
    with pytest.raises(Conflict, match="1 unfinished job"):
        c.delete_environment("py-small")
    job = c.list().items[0]
    c.cancel(job.id)
    c.delete_environment("py-small")
    with pytest.raises(NotFound):
        c.environment("py-small")


def test_environment_network_over_http(idle: LiveServer) -> None:
    """``network`` on the wire: "full" by default, given on create, changed by PATCH,
    in every answer; any other value is a 422 VALIDATION_ERROR naming the field."""
    with httpx.Client(
        base_url=f"{idle.url}/v1",
        headers={"Authorization": f"Bearer {idle.admin_key}"},
    ) as http:
        default = http.post("/environments", json={"name": "online"})
        assert default.status_code == 201, default.text
        assert default.json()["network"] == "full"
        created = http.post("/environments", json={"name": "offline", "network": "none"})
        assert created.status_code == 201, created.text
        assert created.json()["network"] == "none"
        assert http.get("/environments/offline").json()["network"] == "none"
        listed = http.get("/environments").json()["items"]
        assert [(e["name"], e["network"]) for e in listed] == [
            ("offline", "none"),
            ("online", "full"),
        ]
        patched = http.patch("/environments/online", json={"network": "none"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["network"] == "none"
        assert http.patch("/environments/online", json={"cpu_slots": 2}).json()["network"] == "none"
        assert (
            http.patch("/environments/online", json={"network": "full"}).json()["network"] == "full"
        )
        for call in (
            lambda: http.post("/environments", json={"name": "bad", "network": "host"}),
            lambda: http.patch("/environments/offline", json={"network": "bridge"}),
            lambda: http.patch("/environments/offline", json={"network": None}),
        ):
            answer = call()
            assert answer.status_code == 422, answer.text
            body = answer.json()
            assert body["code"] == "VALIDATION_ERROR", body
            assert body["details"]["field"] == "network", body
            assert body["message"] == "network: must be 'full' or 'none'", body
        null = http.post("/environments", json={"name": "bad", "network": None}).json()
        assert null["code"] == "VALIDATION_ERROR", null  # not a string: the body's schema
        assert [e["field"] for e in null["details"]["errors"]] == ["body.network"], null
        assert http.get("/environments/offline").json()["network"] == "none"
        assert http.get("/environments/bad").status_code == 404


def test_other_tenant_sees_nothing(idle: LiveServer, c: Client, tmp_path: Path) -> None:
    services = idle.services
    services.auth.store.ensure_tenant("other", "Other", services.clock.now())
    _key, secret = services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    m = c.create_model("churn")
    v = c.push_version("churn", "1", _notebook(tmp_path / "s.ipynb"))
    env = c.create_environment("py-small")
    with idle.client(secret) as o:
        assert o.models() == [] and o.environments() == []
        for ref in ("churn", m.id):
            with pytest.raises(NotFound):
                o.model(ref)
            with pytest.raises(NotFound):
                o.versions(ref)
        for call in (
            lambda: o.version("churn", "1"),
            lambda: o.download_artifact("churn", "1", tmp_path / "x"),
            lambda: o.push_version("churn", "2", entrypoint="true"),
            lambda: o.update_model("churn", description="x"),
            lambda: o.deprecate_version("churn", "1"),
            lambda: o.delete_version("churn", "1"),
            lambda: o.delete_model("churn"),
            lambda: o.environment("py-small"),
            lambda: o.environment(env.id),
            lambda: o.update_environment("py-small", cpu_slots=2),
            lambda: o.delete_environment(env.id),
        ):
            with pytest.raises(NotFound):
                call()
        # names are unique per tenant only; the other tenant cannot use ours as default
        o.create_model("churn")
        with pytest.raises(NotFound):
            o.push_version("churn", "1", entrypoint="true", default_environment=env.id)
        assert o.versions("churn") == []
    other = Principal(tenant_id="other", key_id="o", key_name="o", role=Role.ADMIN)
    for ref in ("churn:1", v.id):
        with pytest.raises(ServiceNotFound):
            services.registry.resolve(other, ref)
    assert c.version("churn", "1").id == v.id


def test_openapi_documents_json_and_multipart(c: Client) -> None:
    spec = c._http.get("/openapi.json").json()
    body = spec["paths"]["/v1/models/{ref}/versions"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["artifact"]["format"] == "binary"
    assert "$defs" not in json.dumps(body)


def test_cli(idle: LiveServer, tmp_path: Path) -> None:
    env = {"JOBYARD_URL": idle.url, "JOBYARD_API_KEY": idle.admin_key, "COLUMNS": "200"}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args), env=env)
        return result.exit_code, result.output

    nb = _notebook(tmp_path / "score.ipynb")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"t": {"maximum": 1}}}))
    assert run("models", "create", "churn", "--description", "Churn")[0] == 0
    code, out = run("models", "create", "churn")
    assert code == exitcodes.REFUSED and "already exists" in out
    code, out = run(
        "models", "push", "churn", str(nb), "--version", "1.0.0",
        "--input-role", "customers:csv:required", "--output-role", "scores:csv",
        "--param", "t=0.5", "--schema", str(schema),
    )  # fmt: skip
    assert code == 0, out
    assert "churn:1.0.0" in out and "notebook" in out
    code, out = run("models", "show", "churn:1.0.0", "--json")
    shown = json.loads(out)
    assert shown["default_parameters"] == {"t": 0.5}
    assert shown["input_roles"][0] == {
        "role": "customers",
        "kind": "csv",
        "metric": None,
        "required": True,
    }
    assert shown["output_roles"][0]["metric"] == "csv"
    code, out = run("models", "show", "churn")
    assert code == 0 and "1.0.0" in out and "Churn" in out
    assert "1.0.0" in run("models", "versions", "churn")[1]
    assert "churn" in run("models", "list")[1]
    assert run("models", "push", "churn", str(nb), "--version", "1.0.0")[0] == exitcodes.REFUSED
    assert run("models", "push", "churn", "--version", "2", "--input-role", "a:b:c:d")[0] == 2
    assert run("models", "deprecate", "churn")[0] == 2  # NAME:VERSION needed
    assert "deprecated" in run("models", "deprecate", "churn:1.0.0")[1]

    code, out = run("envs", "create", "py-small", "--pip", "pandas==2.*", "--env", "REGION=eu",
                    "--max-concurrent", "1", "--network", "none")  # fmt: skip
    assert code == 0, out
    code, out = run("envs", "show", "py-small")
    assert "pandas==2.*" in out and "REGION" in out and "eu" not in out.split("REGION")[1][:5]
    assert re.search(r"network\s+none", out), out
    assert json.loads(run("envs", "show", "py-small", "--json")[1])["env_vars"] == {"REGION": "eu"}
    conf = tmp_path / "app.ini"
    conf.write_text("[x]\n")
    code, out = run("envs", "update", "py-small", "--file", f"conf/app.ini={conf}", "--cpu", "2",
                    "--clear-pip")  # fmt: skip
    assert code == 0, out
    e = json.loads(run("envs", "show", "py-small", "--json")[1])
    assert (e["files"], e["cpu_slots"], e["pip_requirements"]) == ({"conf/app.ini": "[x]\n"}, 2, [])
    assert e["network"] == "none"  # unchanged by an update without --network
    assert run("envs", "create", "bad", "--pip", "-e .")[0] == exitcodes.REFUSED
    assert run("envs", "create", "bad", "--network", "host")[0] == exitcodes.USAGE
    assert run("envs", "update", "py-small", "--network", "host")[0] == exitcodes.USAGE
    assert run("envs", "create", "online")[0] == 0
    code, out = run("envs", "list")
    assert code == 0 and "network" in out, out
    assert re.search(r"online\s.*\sfull\s", out) and re.search(r"py-small\s.*\snone\s", out), out
    code, out = run("envs", "update", "py-small", "--network", "full")
    assert code == 0, out
    assert json.loads(run("envs", "show", "py-small", "--json")[1])["network"] == "full"
    assert run("envs", "delete", "online")[0] == 0
    assert run("envs", "delete", "py-small")[0] == 0
    assert run("envs", "show", "py-small")[0] == exitcodes.REFUSED
    assert run("models", "delete-version", "churn:1.0.0")[0] == 0
    assert run("models", "delete", "churn")[0] == 0
