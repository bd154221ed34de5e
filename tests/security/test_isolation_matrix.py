"""The isolation matrix: every route of the OpenAPI schema (and the few kept out of it)
against every kind of caller.

One live server per database (module scope) holds two tenants: A (``default``) and B.
Each is seeded with one object of every kind a path can name (job with results, Ray job,
model and version with an artifact, environment, folder with a file, definition,
project, API key, Ray package). Then, for every route:

(a) no ``Authorization`` → 401 (public allow-list excepted);
(b, c) revoked, expired, unknown, malformed keys, a deactivated tenant's key and an
    ended job's token → 401 (the Ray routes answer 403, as Ray's client expects);
(d) tenant B's admin key with A's objects in the path → 404, answered exactly as for an
    object that exists nowhere (never a 200/403 that reveals it); the same with one of
    A's objects among B's own (e.g. A's job under B's tenant and project); with B's own
    objects → 2xx (a positive control: the 404 comes from scoping, not from a bad
    request);
(e) a viewer key of A on every non-GET route (with A's own objects) → 403;
(f) lists, summaries and streams read with B's key hold none of A's ids or names.

A route added later is walked automatically; a path parameter that
:data:`PATH_PARAMS` does not know fails :func:`test_every_path_parameter_is_mapped`
(and the route's own cases), a required body that :data:`BODIES` lacks fails its
case, and a route kept out of the schema that :data:`HIDDEN` does not list fails
:func:`test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from jobyard import web
from jobyard.api import errors as api_errors
from jobyard.api.app import create_app
from jobyard.api.metrics import metrics_route
from jobyard.domain.auth import Role
from jobyard.sdk.config import write_credentials
from jobyard.settings import Settings
from jobyard.wiring import build_services
from tests.conftest import LiveServer, _free_port, _truncate, fast_settings, wait_for
from tests.support.sandbox import require_sandbox

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}


# ---- the routes ------------------------------------------------------------------------
def _schema_app() -> FastAPI:
    """The application, built only to read its routes (no database behind it)."""
    stub = SimpleNamespace(
        settings=Settings(), db=None, clock=None, node_id="schema-only", status=None
    )
    app = create_app(stub)  # type: ignore[arg-type]
    web.load(app)  # the dashboard's routes too (loaded on its first request otherwise)
    return app


APP = _schema_app()
OPENAPI: dict[str, Any] = APP.openapi()
SCHEMA_OPS: list[tuple[str, str]] = [
    (method.upper(), path)
    for path, item in OPENAPI["paths"].items()
    for method in item
    if method in HTTP_METHODS
]

#: routes kept out of the schema on purpose; each is walked like the schema's routes
HIDDEN: dict[tuple[str, str], str] = {
    ("GET", "/api/jobs"): "Ray's client also calls the list without the trailing slash",
    ("POST", "/api/jobs"): "Ray's client also submits without the trailing slash",
}
#: WebSocket routes (never in an OpenAPI schema): checked by test_websocket_tail_*
WEBSOCKETS = {"/api/jobs/{job_id}/logs/tail"}
#: FastAPI's own pages
DOC_PAGES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/docs/assets/{name}", "/redoc"}
#: answered without a key (/metrics: public by default, counts only, see docs/how-to/operations.md)
PUBLIC = {"/healthz", "/readyz", "/metrics", *DOC_PAGES}

#: never end by themselves: read up to a marker (test_event_stream_shows_no_foreign_events)
ENDLESS_STREAMS = {"/v1/events/stream"}

ALL_OPS = sorted({*SCHEMA_OPS, *HIDDEN})
PRIVATE_OPS = [op for op in ALL_OPS if op[1] not in PUBLIC]
PARAM_OPS = [op for op in PRIVATE_OPS if "{" in op[1]]
GET_PARAM_OPS = [op for op in PARAM_OPS if op[0] == "GET"]
WRITE_OPS = [op for op in PRIVATE_OPS if op[0] != "GET"]
LIST_OPS = [op for op in PRIVATE_OPS if op[0] == "GET" and "{" not in op[1]]


def _id(value: Any) -> str:
    return f"{value[0]} {value[1]}" if isinstance(value, tuple) else str(value)


#: Ray's routes speak Ray's protocol: a credential that is refused is 403 ("Authentication
#: failed"), none at all 401 (docs/reference/compat-ray.md, "Authentication")
RAY_PREFIXES = ("/api/jobs", "/api/version", "/api/packages")


def _is_ray(path: str) -> bool:
    return path.startswith(RAY_PREFIXES)


# ---- what each path parameter names ----------------------------------------------------
#: (path prefix, parameter) → the attribute of a :class:`Seed` that the parameter names
#: under that prefix (the longest matching prefix wins). A parameter that is not here
#: fails the matrix: map it to the object it names, so that its scoping is checked.
PATH_PARAMS: dict[tuple[str, str], str] = {
    ("/v1/jobs/", "job_id"): "job",
    ("/v1/jobs/", "path"): "result_file",
    ("/v1/models/", "ref"): "model",
    ("/v1/models/", "version"): "version",
    ("/v1/environments/", "ref"): "environment",
    ("/v1/folders/", "ref"): "folder",
    ("/v1/folders/", "path"): "file",
    ("/v1/definitions/", "def_id"): "definition",
    ("/v1/tenants/", "tenant_id"): "tenant",
    ("/v1/projects/", "ref"): "project",
    ("/v1/keys/", "key_id"): "spare_key",
    # the web dashboard (cookie sessions; checked by test_web_*)
    ("/ui/jobs/", "job_id"): "job",
    ("/ui/jobs/", "path"): "result_file",
    ("/ui/models/", "name"): "model",
    ("/ui/folders/", "name"): "folder",
    ("/ui/folders/", "path"): "file",
    ("/ui/definitions/", "def_id"): "definition",
    ("/ui/admin/keys/", "key_id"): "spare_key",
    # compatibility routers
    ("/api/v1/jobs/", "job_id"): "definition",  # the Prediction API's jobs are definitions
    ("/api/jobmanager/v3/jobs/", "job_id"): "job",
    ("/api/history/jobs/", "jobIdentifier"): "job",
    ("/api/jobs/", "job_id"): "ray_job",  # a Ray submission id
    ("/api/packages/", "protocol"): "protocol",
    ("/api/packages/", "package_name"): "package",
    # mindzie (spec 001): /api/{tenantId}/{projectId}/execution/…
    ("/api/", "tenantId"): "tenant",
    ("/api/", "projectId"): "job_project",  # the project the seeded jobs are in
    ("/api/", "jobId"): "job",
}

#: (method, path) → (the status B's admin key gets with A's object, why that is right).
#: The answer must still equal the answer for an object that exists nowhere.
CROSS_TENANT_EXCEPTIONS: dict[tuple[str, str], tuple[int, str]] = {
    ("PATCH", "/v1/tenants/{tenant_id}"): (
        403,
        "superuser only: every other key is refused before any lookup, so the answer is"
        " the same for every tenant id and reveals nothing",
    ),
    ("PUT", "/api/packages/{protocol}/{package_name}"): (
        200,
        "an upload writes into the caller's own package namespace (packages/<tenant>/…);"
        " A's package of the same name is untouched (checked in"
        " test_package_upload_under_a_foreign_name_stays_in_the_own_namespace)",
    ),
}

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def path_objects(path: str) -> dict[str, str]:
    """Each path parameter of ``path`` → the Seed attribute it names; fails the test for
    a parameter that :data:`PATH_PARAMS` does not know."""
    out: dict[str, str] = {}
    for name in _PARAM.findall(path):
        found = [
            (prefix, attr)
            for (prefix, param), attr in PATH_PARAMS.items()
            if param == name and path.startswith(prefix)
        ]
        if not found:
            pytest.fail(
                f"path parameter {{{name}}} of {path} is not in PATH_PARAMS: add"
                f" (prefix, {name!r}) → the seeded object it names, so that the isolation"
                " matrix checks its tenant scoping"
            )
        out[name] = max(found, key=lambda f: len(f[0]))[1]
    return out


# ---- seeded objects --------------------------------------------------------------------
@dataclass
class Seed:
    """One tenant's objects (names and ids) and its admin key."""

    tenant: str
    key: str
    tag: str = ""
    project: str = ""
    folder: str = ""
    file: str = ""
    model: str = ""
    version: str = "1.0"
    environment: str = ""
    definition: str = ""
    job: str = ""
    job_project: str = "default"  #: jobs of an unscoped key go to the default project
    result_file: str = ""
    ray_job: str = ""
    package: str = ""
    private_package: str = ""  #: a package no other tenant ever uploads under its name
    protocol: str = "gcs"
    spare_key: str = ""
    ids: dict[str, str] = field(default_factory=dict)  #: kind → id (markers)
    job_token: str = ""  #: the token of ``job``, which has ended

    @property
    def markers(self) -> set[str]:
        """Strings no other tenant may ever read: the tag in every name, and ids."""
        return {self.tag, *self.ids.values()}


def nowhere() -> Seed:
    """Names and ids that exist in no tenant."""
    n = uuid.uuid4().hex[:10]
    return Seed(
        tenant=f"nowhere{n}",
        key="",
        project=f"nowhere{n}",
        folder=f"nowhere-{n}",
        file=f"nowhere/{n}.txt",
        model=f"nowhere-{n}",
        environment=f"nowhere-{n}",
        definition=uuid.uuid4().hex,
        job=uuid.uuid4().hex,
        job_project=f"nowhere{n}",
        result_file=f"nowhere-{n}.txt",
        ray_job=f"raysub-nowhere-{n}",
        package=f"_ray_pkg_nowhere{n}.zip",
        spare_key=f"nowhere{n}",
    )


def fill(path: str, seed: Seed) -> str:
    objects = path_objects(path)
    return _PARAM.sub(lambda m: str(getattr(seed, objects[m.group(1)])), path)


def _zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/__init__.py", text)
    return buf.getvalue()


Body = Callable[[Seed], dict[str, Any]]
#: (method, path) → httpx keyword arguments of a valid request body, given the caller's
#: own objects (so that only the path's object can make the request fail). Every route
#: with a path parameter and a required body needs one here.
BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/v1/jobs/{job_id}/report"): lambda s: {"json": {"type": "progress", "percent": 50}},
    ("PATCH", "/v1/models/{ref}"): lambda s: {"json": {"description": "changed"}},
    ("POST", "/v1/models/{ref}/versions"): lambda s: {
        "json": {"version": "9.0", "kind": "command", "entrypoint": "true"}
    },
    ("PATCH", "/v1/environments/{ref}"): lambda s: {"json": {"description": "changed"}},
    ("POST", "/v1/folders/{ref}/files"): lambda s: {
        "files": {"files": ("new.txt", b"new", "text/plain")}
    },
    ("PUT", "/v1/folders/{ref}/files/{path}"): lambda s: {"content": b"changed"},
    ("PUT", "/v1/definitions/{def_id}"): lambda s: {
        "json": {"name": "changed", "model": f"{s.model}:{s.version}"}
    },
    ("PATCH", "/v1/tenants/{tenant_id}"): lambda s: {"json": {"active": True}},
    ("PATCH", "/v1/projects/{ref}"): lambda s: {"json": {"active": True}},
    ("PUT", "/api/v1/jobs/{job_id}"): lambda s: {"json": {"description": "changed"}},
    ("PUT", "/api/packages/{protocol}/{package_name}"): lambda s: {
        "content": _zip("planted = True\n")
    },
    # mindzie (spec 001)
    ("POST", "/api/{tenantId}/{projectId}/execution/job"): lambda s: {
        "json": {
            "jobName": "matrix",
            "command": "true",
            "scheduling": {"executeImmediately": False, "scheduledTime": "2999-01-01T00:00:00Z"},
        }
    },
}


def _required_body(method: str, path: str) -> dict[str, Any] | None:
    item = OPENAPI["paths"].get(path, {}).get(method.lower(), {})
    body = item.get("requestBody")
    return body if body and body.get("required") else None


def body_for(method: str, path: str, caller: Seed, *, strict: bool) -> dict[str, Any]:
    """httpx keyword arguments for the request body. ``strict``: a route with a path
    parameter and a required body must have a valid body in :data:`BODIES`."""
    if (method, path) in BODIES:
        return BODIES[(method, path)](caller)
    body = _required_body(method, path)
    if body is None:
        return {}
    if strict:
        pytest.fail(
            f"{method} {path} needs a request body: add a valid one to BODIES, so that a"
            " 404 can only come from the path's object"
        )
    content = body.get("content", {})
    if "application/json" in content:
        return {"json": {}}
    if "multipart/form-data" in content:
        return {"files": {"files": ("x.txt", b"x", "text/plain")}}
    return {"content": b"x"}


# ---- the world -------------------------------------------------------------------------
@dataclass
class World:
    server: LiveServer
    http: httpx.Client
    root: str  #: a superuser key of tenant A
    a: Seed
    b: Seed
    p: Seed  #: tenant A, through an admin key scoped to A's project ``a.project``
    keys: dict[str, str]  #: A's keys by role name, and refused credentials by kind
    key_ids: dict[str, str]

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.http.request(method, path, headers=headers, **kwargs)


def _ok(r: httpx.Response, *codes: int) -> httpx.Response:
    assert r.status_code in codes, (
        f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:500]}"
    )
    return r


def _seed(world: World, seed: Seed, project: str | None = None) -> Seed:
    """Create one object of every kind in ``seed.tenant`` with its admin key; for a
    project-scoped key pass its ``project`` (not created then)."""
    key, tag = seed.key, seed.tag

    def post(path: str, code: int = 201, **kw: Any) -> dict[str, Any]:
        body: dict[str, Any] = _ok(world.call("POST", path, key, **kw), code).json()
        return body

    if project is None:
        seed.project = post("/v1/projects", json={"name": f"proj-{tag}"})["id"]
    else:
        seed.project = seed.job_project = project
    folder = post("/v1/folders", json={"name": f"folder-{tag}"})
    seed.folder, seed.file = folder["name"], f"data/in-{tag}.txt"
    path = f"/v1/folders/{seed.folder}/files/{seed.file}"
    _ok(world.call("PUT", path, key, content=f"content of {tag}".encode()), 201)
    model = post("/v1/models", json={"name": f"model-{tag}", "expected_interval_minutes": 1})
    seed.model = model["name"]
    spec = {"version": seed.version, "kind": "command", "entrypoint": "sh run.sh"}
    version = post(
        f"/v1/models/{seed.model}/versions",
        data={"spec": json.dumps(spec), "archive": "false"},
        files={"artifact": ("run.sh", f"echo {tag}\n".encode(), "application/octet-stream")},
    )
    env = post("/v1/environments", json={"name": f"env-{tag}"})
    seed.environment = env["name"]
    definition = post(
        "/v1/definitions", json={"name": f"def-{tag}", "model": f"{seed.model}:{seed.version}"}
    )
    seed.definition = definition["id"]
    seed.result_file = f"result-{tag}.txt"
    job = post(
        "/v1/jobs",
        json={
            "name": f"job-{tag}",
            "entrypoint": f"mkdir -p output && echo {tag} > output/{seed.result_file}"
            " && echo token=$JOBYARD_JOB_TOKEN",
        },
    )
    seed.job = job["id"]
    seed.ray_job = f"raysub-{tag}"
    post("/api/jobs/", 200, json={"entrypoint": f"echo ray-{tag}", "submission_id": seed.ray_job})
    seed.package = f"_ray_pkg_{tag}.zip"
    _ok(world.call("PUT", f"/api/packages/gcs/{seed.package}", key, content=_zip(tag)), 200)
    seed.private_package = f"_ray_pkg_{tag}private.zip"
    path = f"/api/packages/gcs/{seed.private_package}"
    _ok(world.call("PUT", path, key, content=_zip(tag)), 200)
    spare = post("/v1/keys", json={"name": f"spare-{tag}", "role": "member", "project": project})
    seed.spare_key = spare["id"]

    def ended() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = _ok(world.call("GET", "/v1/jobs", key), 200).json()["items"]
        return items if len(items) == 2 and all(j["status"] in ENDED for j in items) else None

    jobs = wait_for(ended, timeout=60)
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    log = _ok(world.call("GET", f"/v1/jobs/{seed.job}/logs", key), 200).text
    seed.job_token = log.split("token=", 1)[1].split()[0]
    seed.ids = {
        "folder": folder["id"],
        "model": model["id"],
        "version": version["id"],
        "environment": env["id"],
        "definition": definition["id"],
        "spare_key": spare["id"],
        **{f"job:{j['name']}": j["id"] for j in jobs},
    }
    if project is None:
        seed.ids["project"] = seed.project
    return seed


def _new_key(world: World, key: str, **body: Any) -> tuple[str, str]:
    created = _ok(world.call("POST", "/v1/keys", key, json=body), 201).json()
    return created["id"], created["secret"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A live server with tenants A (``default``) and B, both seeded."""
    tmp = tmp_path_factory.mktemp("matrix")
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp / 'jobyard.db'}"
    else:
        db_url = request.getfixturevalue("pg_url")
        _truncate(db_url)
    port = _free_port()
    settings = fast_settings(tmp / "data", db_url, port=port, public_url=f"http://127.0.0.1:{port}")
    services = build_services(settings)
    services.start()
    server = LiveServer(services).start()
    http = httpx.Client(base_url=server.url, timeout=20)
    try:
        _, root = services.auth.create_key(tenant_id="default", name="root", role=Role.SUPERUSER)
        w = World(
            server=server,
            http=http,
            root=root,
            a=Seed(tenant="default", key=server.admin_key, tag=f"acanary{uuid.uuid4().hex[:8]}"),
            b=Seed(tenant="b", key="", tag=f"bown{uuid.uuid4().hex[:8]}"),
            p=Seed(tenant="default", key="", tag=f"pscope{uuid.uuid4().hex[:8]}"),
            keys={},
            key_ids={},
        )
        _ok(w.call("POST", "/v1/tenants", root, json={"id": "b", "name": "Tenant B"}), 201)
        _, w.b.key = _new_key(w, root, name="b-admin", role="admin", tenant="b")
        _seed(w, w.a)
        _seed(w, w.b)
        w.key_ids["scoped-admin"], w.p.key = _new_key(
            w, w.a.key, name="a-scoped-admin", role="admin", project=w.a.project
        )
        _seed(w, w.p, project=w.a.project)
        for role in ("viewer", "member", "operator", "admin"):
            w.key_ids[role], w.keys[role] = _new_key(w, w.a.key, name=f"a-{role}", role=role)
        w.key_ids["member2"], w.keys["member2"] = _new_key(
            w, w.a.key, name="a-member2", role="member"
        )
        # refused credentials
        revoked_id, w.keys["revoked"] = _new_key(w, w.a.key, name="revoked", role="admin")
        _ok(w.call("DELETE", f"/v1/keys/{revoked_id}", w.a.key), 204)
        _, w.keys["expired"] = services.auth.create_key(
            tenant_id="default",
            name="expired",
            role=Role.ADMIN,
            expires_at=services.clock.now() - timedelta(seconds=1),
        )
        _ok(w.call("POST", "/v1/tenants", root, json={"id": "c", "name": "Tenant C"}), 201)
        _, w.keys["deactivated-tenant"] = _new_key(w, root, name="c", role="admin", tenant="c")
        _ok(w.call("PATCH", "/v1/tenants/c", root, json={"active": False}), 200)
        w.keys["ended-job-token"] = w.a.job_token
        w.keys["unknown"] = "jy_AAAAAAAAAAAA_" + "B" * 40
        w.keys["malformed"] = "not-a-jobyard-key"
        yield w
    finally:
        http.close()
        server.stop()
        services.close()


def assert_no_markers(r: httpx.Response, foreign: Seed, what: str, sent: str = "") -> None:
    """None of ``foreign``'s names or ids in the answer, except those the caller sent
    itself (an error message may repeat the path)."""
    text = r.text
    leaked = sorted(m for m in foreign.markers if m and m in text and m not in sent)
    assert not leaked, f"{what}: the answer shows tenant A's {leaked}: {text[:800]}"


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


# ---- the route inventory ---------------------------------------------------------------
def _walk(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of the app, also those of routers FastAPI includes lazily."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(list(inner.routes))
        else:
            yield route


def test_every_route_is_in_the_matrix() -> None:
    http_routes: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    pages: set[str] = set()
    for route in _walk(list(APP.routes)):
        if isinstance(route, Mount):
            assert route.path == WEB_STATIC, f"an unknown mount {route.path}"
            continue
        if isinstance(route, APIRoute) and _is_web(route.path_format):
            continue  # the dashboard's pages: WEB_OPS, walked by the test_web_* cases
        if isinstance(route, APIRoute):
            http_routes |= {(m, route.path_format) for m in route.methods or ()}
        elif isinstance(route, WebSocketRoute):
            sockets.add(route.path_format)
        elif isinstance(route, Route):
            pages.add(route.path)
        else:
            pytest.fail(f"unknown kind of route {route!r}: teach the matrix about it")
    assert set(SCHEMA_OPS) <= http_routes, "the route walk missed routes: fix _walk"
    hidden = http_routes - set(SCHEMA_OPS) - {("HEAD", p) for _, p in http_routes}
    assert hidden == set(HIDDEN), (
        f"routes outside the OpenAPI schema that the matrix does not know: "
        f"{sorted(hidden - set(HIDDEN))}; add them to HIDDEN (with a reason) so they are"
        f" walked too; listed but gone: {sorted(set(HIDDEN) - hidden)}"
    )
    assert sockets == WEBSOCKETS, f"WebSocket routes changed: {sockets}; check them like the tail"
    assert pages == DOC_PAGES, f"plain routes changed: {pages}"


@pytest.mark.parametrize(("method", "path"), PARAM_OPS, ids=_id)
def test_every_path_parameter_is_mapped(method: str, path: str) -> None:
    assert path_objects(path)


# ---- the web dashboard: the same scoping through a session cookie ------------------------
WEB_STATIC = "/ui/static"
#: dashboard pages a visitor without a session may see (they redirect or sign in)
WEB_PUBLIC = {"/", "/ui", "/ui/", "/ui/sign-in"}


def _is_web(path: str) -> bool:
    return path == "/" or path == "/ui" or path.startswith("/ui/")


WEB_OPS = sorted(
    (method, route.path_format)
    for route in _walk(list(APP.routes))
    if isinstance(route, APIRoute) and _is_web(route.path_format)
    for method in route.methods or ()
    if method != "HEAD"
)
WEB_PRIVATE_OPS = [op for op in WEB_OPS if op[1] not in WEB_PUBLIC]
WEB_PARAM_OPS = [op for op in WEB_PRIVATE_OPS if "{" in op[1]]
WEB_WRITE_OPS = [op for op in WEB_PRIVATE_OPS if op[0] != "GET" and op[1] != "/ui/sign-out"]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class WebSession:
    http: httpx.Client
    csrf: str


def web_session(world: World, key: str) -> WebSession:
    """Sign in through the sign-in form, as a browser does."""
    http = httpx.Client(base_url=world.server.url, timeout=20)
    form = _ok(http.get("/ui/sign-in"), 200)
    match = _CSRF.search(form.text)
    assert match, form.text
    data = {"api_key": key, "csrf": match.group(1), "next": "/ui/jobs"}
    _ok(http.post("/ui/sign-in", data=data), 303)
    me = _ok(http.get("/ui/me"), 200)
    match = _CSRF.search(me.text)
    assert match, me.text
    return WebSession(http, match.group(1))


@pytest.fixture(scope="module")
def web_b(world: World) -> Iterator[WebSession]:
    session = web_session(world, world.b.key)
    yield session
    session.http.close()


@pytest.mark.parametrize(("method", "path"), WEB_PRIVATE_OPS, ids=_id)
def test_web_page_without_a_session_signs_in_first(world: World, method: str, path: str) -> None:
    objects = nowhere() if "{" in path else world.a
    r = world.http.request(method, fill(path, objects) if "{" in path else path)
    if method == "GET" and not path.endswith("/live"):
        assert r.status_code == 303, r.text[:300]
        assert r.headers["location"].startswith("/ui/sign-in?next=")
    else:
        assert r.status_code == 401, r.text[:300]


@pytest.mark.parametrize(("method", "path"), WEB_PARAM_OPS, ids=_id)
def test_web_other_tenants_object_is_not_found(
    world: World, web_b: WebSession, method: str, path: str
) -> None:
    """Tenant B's session with A's objects in the path: 404, as for an object that
    exists nowhere, and nothing of A's in the page."""
    data = {"csrf": web_b.csrf} if method != "GET" else None
    foreign = web_b.http.request(method, fill(path, world.a), data=data)
    absent = web_b.http.request(method, fill(path, nowhere()), data=data)
    assert foreign.status_code == 404, f"{foreign.status_code} {foreign.text[:300]}"
    assert absent.status_code == 404, f"{absent.status_code} {absent.text[:300]}"
    assert_no_markers(foreign, world.a, f"{method} {path}", sent=fill(path, world.a))


@pytest.mark.parametrize(
    ("method", "path"), [op for op in WEB_PARAM_OPS if op[0] == "GET"], ids=_id
)
def test_web_own_object_is_found(world: World, web_b: WebSession, method: str, path: str) -> None:
    """The positive control: B's own objects answer 200."""
    r = web_b.http.request(method, fill(path, world.b))
    if path.endswith("/live"):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    else:
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"


def test_web_lists_show_no_foreign_rows(world: World, web_b: WebSession) -> None:
    for path in ("/ui/jobs", "/ui/models", "/ui/folders", "/ui/definitions", "/ui/admin/keys"):
        r = _ok(web_b.http.get(path), 200)
        assert_no_markers(r, world.a, f"GET {path}")
        assert any(m in r.text for m in world.b.markers if m), f"GET {path}: no own rows"


@pytest.mark.parametrize(("method", "path"), WEB_WRITE_OPS, ids=_id)
def test_web_viewer_may_not_write(world: World, method: str, path: str) -> None:
    viewer = web_session(world, world.keys["viewer"])
    try:
        target = fill(path, world.a) if "{" in path else path
        r = viewer.http.request(method, target, data={"csrf": viewer.csrf})
        assert r.status_code == 403, f"{r.status_code} {r.text[:300]}"
    finally:
        viewer.http.close()


# ---- (a) and (b): credentials ------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), PRIVATE_OPS, ids=_id)
def test_no_key_is_401(world: World, method: str, path: str) -> None:
    r = world.call(
        method, fill(path, world.a), None, **body_for(method, path, world.a, strict=False)
    )
    assert r.status_code == 401, f"{method} {path} without a key: {r.status_code} {r.text[:300]}"
    if not _is_ray(path):
        assert _code(r) == "UNAUTHENTICATED"


@pytest.mark.parametrize("path", sorted(PUBLIC - {"/docs/oauth2-redirect", "/docs/assets/{name}"}))
def test_public_routes_answer_without_a_key(world: World, path: str) -> None:
    assert world.call("GET", path, None).status_code == 200


REFUSED = ["revoked", "expired", "deactivated-tenant", "ended-job-token", "unknown", "malformed"]


@pytest.mark.parametrize("credential", REFUSED)
@pytest.mark.parametrize(("method", "path"), PRIVATE_OPS, ids=_id)
def test_refused_credential_is_401(world: World, method: str, path: str, credential: str) -> None:
    key = world.keys[credential]
    r = world.call(
        method, fill(path, world.a), key, **body_for(method, path, world.a, strict=False)
    )
    expected = 403 if _is_ray(path) else 401
    assert r.status_code == expected, (
        f"{method} {path} with a {credential} credential: {r.status_code} {r.text[:300]}"
    )


# ---- (d): another tenant's objects -----------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), PARAM_OPS, ids=_id)
def test_other_tenants_object_is_not_found(world: World, method: str, path: str) -> None:
    """B's admin key, A's object in the path: 404, the same answer as for nothing."""
    body = body_for(method, path, world.b, strict=True)
    missing = world.call(method, fill(path, nowhere()), world.b.key, **body)
    r = world.call(method, fill(path, world.a), world.b.key, **body)
    expected, why = CROSS_TENANT_EXCEPTIONS.get((method, path), (404, ""))
    assert r.status_code == expected, (
        f"{method} {fill(path, world.a)} with tenant B's admin key answered"
        f" {r.status_code} (expected {expected}{': ' + why if why else ''}): {r.text[:300]}"
    )
    assert (missing.status_code, _code(missing)) == (r.status_code, _code(r)), (
        f"{method} {path}: A's object answers {r.status_code} {_code(r)} but an object that"
        f" exists nowhere answers {missing.status_code} {_code(missing)}: the difference"
        " reveals that A's object exists"
    )
    assert_no_markers(r, world.a, f"{method} {path}", sent=str(r.request.url))


#: Seed attribute → the attribute of A to put in its place: ``job_project`` is "default"
#: in both tenants, and B uploads under the name of A's ``package`` (an exception above)
FOREIGN_FOR = {"job_project": "project", "package": "private_package"}
#: names inside a parent object (a file path in a folder, a version of a model): with
#: B's parent they name B's own (maybe new) object, never one of A's
WITHIN_PARENT = {"file", "result_file", "version", "protocol"}
MULTI_PARAM_OPS = [op for op in PARAM_OPS if len(_PARAM.findall(op[1])) > 1]


@pytest.mark.parametrize(("method", "path"), MULTI_PARAM_OPS, ids=_id)
def test_other_tenants_object_among_own_ones_is_not_found(
    world: World, method: str, path: str
) -> None:
    """B's key and B's objects, with one parameter at a time naming A's object instead."""
    body = body_for(method, path, world.b, strict=True)
    expected, why = CROSS_TENANT_EXCEPTIONS.get((method, path), (404, ""))
    tried = 0
    for attr in path_objects(path).values():
        if attr in WITHIN_PARENT:
            continue
        value = getattr(world.a, FOREIGN_FOR.get(attr, attr))
        mixed = replace(world.b, **{attr: value})
        r = world.call(method, fill(path, mixed), world.b.key, **body)
        tried += 1
        assert r.status_code == expected, (
            f"{method} {fill(path, mixed)} (B's objects, {attr} of tenant A) with B's"
            f" admin key answered {r.status_code} (expected {expected}"
            f"{': ' + why if why else ''}): {r.text[:300]}"
        )
        assert_no_markers(r, world.a, f"{method} {path}", sent=str(r.request.url))
    assert tried, f"{method} {path}: no parameter could name a foreign object"


@pytest.mark.parametrize(("method", "path"), GET_PARAM_OPS, ids=_id)
def test_own_object_is_found(world: World, method: str, path: str) -> None:
    """The positive control of the 404s above: B's key with B's own objects."""
    r = world.call(method, fill(path, world.b), world.b.key)
    assert 200 <= r.status_code < 300, (
        f"{method} {fill(path, world.b)} with B's own objects: {r.status_code} {r.text[:300]}"
    )
    assert_no_markers(r, world.a, f"{method} {path}")


#: path prefixes whose objects belong to the tenant, not to one of its projects
TENANT_WIDE: dict[str, str] = {
    "/v1/tenants/": "tenants are above projects (superuser routes)",
    "/v1/projects/": "the tenant's projects, managed by its admins",
    "/v1/keys/": "the tenant's API keys",
    "/api/packages/": "Ray packages are kept per tenant (packages/<tenant>/…)",
    "/api/{tenantId}/execution/system/": "the tenant's figures, like /v1/system/status",
}
PROJECT_OPS = [op for op in PARAM_OPS if not op[1].startswith(tuple(TENANT_WIDE))]


@pytest.mark.parametrize(("method", "path"), PROJECT_OPS, ids=_id)
def test_other_projects_object_is_not_found(world: World, method: str, path: str) -> None:
    """An admin key of A scoped to project P, A's objects of the default project in the
    path: 404, as for nothing (routes of TENANT_WIDE excepted)."""
    body = body_for(method, path, world.p, strict=True)
    missing = world.call(method, fill(path, nowhere()), world.p.key, **body)
    r = world.call(method, fill(path, world.a), world.p.key, **body)
    assert r.status_code == 404, (
        f"{method} {fill(path, world.a)} (tenant A, default project) with A's admin key"
        f" scoped to project {world.a.project}: {r.status_code} {r.text[:300]}"
    )
    assert (missing.status_code, _code(missing)) == (r.status_code, _code(r)), (
        f"{method} {path}: {r.status_code} {_code(r)} for the default project's object,"
        f" {missing.status_code} {_code(missing)} for nothing"
    )


@pytest.mark.parametrize(("method", "path"), [op for op in PROJECT_OPS if op[0] == "GET"], ids=_id)
def test_own_projects_object_is_found(world: World, method: str, path: str) -> None:
    r = world.call(method, fill(path, world.p), world.p.key)
    assert 200 <= r.status_code < 300, f"{fill(path, world.p)}: {r.status_code} {r.text[:300]}"
    assert_no_markers(r, world.a, f"{method} {path}", sent=world.a.project)


@pytest.mark.parametrize(
    ("method", "path"), [op for op in LIST_OPS if op[1] not in ENDLESS_STREAMS], ids=_id
)
def test_project_list_shows_no_other_projects_rows(world: World, method: str, path: str) -> None:
    r = world.call(method, path, world.p.key)
    assert r.status_code in (200, 403), f"{path}: {r.status_code} {r.text[:300]}"
    if not path.startswith(("/v1/keys", "/v1/audit", "/v1/projects")):  # tenant-wide
        assert_no_markers(
            r, world.a, f"{method} {path} with a key scoped to a project", sent=world.a.project
        )


def test_project_scoped_admin_cannot_mint_a_wider_key(world: World) -> None:
    """A key never gets more than its creator: not a higher role (checked above), and
    not a wider scope than the creator's project."""
    for body in (
        {"name": "wider", "role": "member"},
        {"name": "other-project", "role": "member", "project": "default"},
    ):
        r = world.call("POST", "/v1/keys", world.p.key, json=body)
        if r.status_code == 201:
            created = r.json()
            world.call("DELETE", f"/v1/keys/{created['id']}", world.root)
            assert created["project_id"] == world.a.project, (
                f"a key scoped to project {world.a.project} created a key scoped to"
                f" {created['project_id']!r} (None: the whole tenant) with {body}"
            )
        else:
            assert r.status_code in (403, 404), r.text


def test_package_upload_under_a_foreign_name_stays_in_the_own_namespace(world: World) -> None:
    path = f"/api/packages/gcs/{world.a.package}"
    _ok(world.call("PUT", path, world.b.key, content=_zip("planted = True\n")), 200)
    # A's client still finds its own package (not B's), and a name only B used is B's
    assert world.call("GET", path, world.a.key).status_code == 200
    only_b = f"/api/packages/gcs/_ray_pkg_onlyb{uuid.uuid4().hex[:8]}.zip"
    _ok(world.call("PUT", only_b, world.b.key, content=_zip("b")), 200)
    assert world.call("GET", only_b, world.a.key).status_code == 404
    assert world.call("GET", only_b, world.b.key).status_code == 200


def test_websocket_tail_is_scoped(world: World) -> None:
    base = world.server.url.replace("http", "ws", 1)
    cases: tuple[tuple[str, dict[str, str], int], ...] = (
        (world.a.ray_job, {}, 401),
        (world.a.ray_job, {"Authorization": f"Bearer {world.keys['revoked']}"}, 403),
        (world.a.ray_job, {"Authorization": f"Bearer {world.b.key}"}, 404),
        (nowhere().ray_job, {"Authorization": f"Bearer {world.b.key}"}, 404),
    )
    for job, headers, status in cases:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{base}/api/jobs/{job}/logs/tail", additional_headers=headers).close()
        assert refused.value.response.status_code == status, (job, headers)
    # the positive control: B tails its own (ended) job to the end
    with connect(
        f"{base}/api/jobs/{world.b.ray_job}/logs/tail",
        additional_headers={"Authorization": f"Bearer {world.b.key}"},
    ) as ws:
        text = "".join(str(frame) for frame in ws)
    assert f"ray-{world.b.tag}" in text and world.a.tag not in text


# ---- (f): lists, summaries, streams --------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"), [op for op in LIST_OPS if op[1] not in ENDLESS_STREAMS], ids=_id
)
def test_list_shows_no_foreign_rows(world: World, method: str, path: str) -> None:
    r = world.call(method, path, world.b.key)
    assert r.status_code in (200, 403), f"{path}: {r.status_code} {r.text[:300]}"
    assert_no_markers(r, world.a, f"{method} {path} with B's key")


#: lists that must show B's own rows (so that the scan above is not vacuous)
OWN_ROWS: dict[str, str] = {
    "/v1/jobs": "job",
    "/v1/models": "model",
    "/v1/environments": "environment",
    "/v1/folders": "folder",
    "/v1/definitions": "definition",
    "/v1/projects": "project",
    "/v1/keys": "spare_key",
    "/api/v1/jobs": "definition",
    "/api/jobmanager/v3/jobs": "job",
    "/api/history/jobs": "job",
    "/api/jobs/": "ray_job",
    "/api/jobs": "ray_job",
}


@pytest.mark.parametrize("path", sorted(OWN_ROWS))
def test_list_shows_own_rows(world: World, path: str) -> None:
    for who, other in ((world.b, world.a), (world.a, world.b)):
        r = _ok(world.call("GET", path, who.key), 200)
        assert str(getattr(who, OWN_ROWS[path])) in r.text, f"{path}: {r.text[:500]}"
        assert_no_markers(r, other, f"GET {path}")


def _by_status(world: World, seed: Seed) -> tuple[dict[str, int], list[dict[str, Any]]]:
    page = _ok(world.call("GET", "/v1/jobs", seed.key, params={"limit": 500}), 200).json()
    assert page["summary"]["total"] == len(page["items"]), (
        f"tenant {seed.tenant}: the summary counts {page['summary']} but the list has"
        f" {len(page['items'])} jobs"
    )
    assert sum(page["summary"]["by_status"].values()) == len(page["items"])
    return page["summary"]["by_status"], page["items"]


def test_summaries_count_only_own_jobs(world: World) -> None:
    b_counts, b_jobs = _by_status(world, world.b)
    _, a_jobs = _by_status(world, world.a)
    assert {j["id"] for j in b_jobs}.isdisjoint({j["id"] for j in a_jobs})
    status = _ok(world.call("GET", "/v1/system/status", world.b.key), 200).json()
    queue, perf = status["queue_statistics"], status["performance_metrics"]
    since = datetime.fromisoformat(perf["since"].replace("Z", "+00:00"))
    ended_today = [
        j
        for j in b_jobs
        if j["ended_at"] and datetime.fromisoformat(j["ended_at"].replace("Z", "+00:00")) >= since
    ]
    assert queue["total_queued"] == b_counts.get("queued", 0), queue
    assert queue["scheduled"] == b_counts.get("scheduled", 0), queue
    active = sum(b_counts.get(s, 0) for s in ("starting", "running", "cancelling"))
    assert queue["running"] == active, queue
    assert perf["jobs_completed_today"] == len(ended_today), (perf, b_counts)
    assert sum(n["active_jobs"] for n in status["execution_nodes"]) == active
    history = _ok(world.call("GET", "/api/history/jobs", world.b.key), 200).json()
    assert history["total"] == len(b_jobs), history
    hub = _ok(world.call("GET", "/api/jobmanager/v3/jobs", world.b.key), 200).json()
    assert hub["totalElements"] == len(b_jobs), hub
    ray = _ok(world.call("GET", "/api/jobs/", world.b.key), 200).json()
    assert len(ray) == len(b_jobs), ray


def test_event_stream_shows_no_foreign_events(world: World) -> None:
    """B reads the whole event history (after=0) up to an event made now: every event of
    A's jobs has a lower seq and would have come first."""
    marker = f"{world.b.tag}-late"
    late = _ok(
        world.call(
            "POST",
            "/v1/jobs",
            world.b.key,
            json={"entrypoint": "true", "name": marker, "scheduled_at": "2999-01-01T00:00:00Z"},
        ),
        201,
    ).json()
    seen = ""
    deadline = time.monotonic() + 15
    headers = {"Authorization": f"Bearer {world.b.key}"}
    try:
        with world.http.stream(
            "GET", "/v1/events/stream", params={"after": 0}, headers=headers
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_text():
                seen += chunk
                if late["id"] in seen or time.monotonic() > deadline:
                    break
    finally:
        _ok(world.call("POST", f"/v1/jobs/{late['id']}/cancel", world.b.key), 202)
    assert late["id"] in seen, f"B's own new event did not arrive: {seen[-500:]}"
    assert world.b.job in seen, "B's older events are missing from its own stream"
    leaked = sorted(m for m in world.a.markers if m in seen)
    assert not leaked, f"the event stream shows A's {leaked}"


def test_project_scoped_key_sees_only_its_project(world: World) -> None:
    _, scoped = _new_key(world, world.a.key, name="scoped", role="member", project=world.a.project)
    mine = _ok(
        world.call(
            "POST",
            "/v1/jobs",
            scoped,
            json={"entrypoint": "true", "scheduled_at": "2999-01-01T00:00:00Z"},
        ),
        201,
    ).json()
    try:
        listed = _ok(world.call("GET", "/v1/jobs", scoped), 200).json()
        ids = {j["id"] for j in listed["items"]}
        assert mine["id"] in ids and world.a.job not in ids, ids
        assert listed["summary"]["total"] == len(ids)
        assert world.call("GET", f"/v1/jobs/{world.a.job}", scoped).status_code == 404
        assert world.call("GET", f"/api/history/jobs/{world.a.job}", scoped).status_code == 404
        everyone = _ok(world.call("GET", "/v1/jobs", world.a.key), 200).json()
        assert mine["id"] in {j["id"] for j in everyone["items"]}
    finally:
        _ok(world.call("POST", f"/v1/jobs/{mine['id']}/cancel", world.a.key), 202)


def test_body_references_to_foreign_objects_are_not_found(world: World) -> None:
    """B names A's objects in request bodies: refused exactly like names of nothing."""
    # a package only A has (B uploads under A's seeded name elsewhere in this module)
    only_a = f"_ray_pkg_onlya{uuid.uuid4().hex[:8]}.zip"
    _ok(world.call("PUT", f"/api/packages/gcs/{only_a}", world.a.key, content=_zip("a")), 200)
    a, none = replace(world.a, package=only_a), nowhere()
    before = len(_by_status(world, world.b)[1])
    version_id = a.ids["version"]
    requests: list[tuple[str, str, Callable[[Seed, str], dict[str, Any]]]] = [
        ("POST", "/v1/jobs", lambda s, v: {"model": f"{s.model}:{s.version}"}),
        ("POST", "/v1/jobs", lambda s, v: {"model": v}),
        ("POST", "/v1/jobs", lambda s, v: {"entrypoint": "true", "environment": s.environment}),
        ("POST", "/v1/jobs", lambda s, v: {"entrypoint": "true", "input_folder": s.folder}),
        ("POST", "/v1/jobs", lambda s, v: {"entrypoint": "true", "output_folder": s.folder}),
        ("POST", "/v1/definitions", lambda s, v: {"name": "x", "model": v}),
        ("POST", "/api/jobmanager/v3/jobs", lambda s, v: {"modelId": v}),
        ("POST", "/api/jobmanager/v3/jobs", lambda s, v: {"modelId": f"{s.model}:{s.version}"}),
        (
            "POST",
            "/api/v1/jobs/setup",
            lambda s, v: {"organisation_id": "b", "job": {"name": "x", "source_version_id": v}},
        ),
        (
            "POST",
            "/api/jobs/",
            lambda s, v: {
                "entrypoint": "true",
                "runtime_env": {"working_dir": f"gcs://{s.package}"},
            },
        ),
    ]
    for method, path, make in requests:
        r = world.call(method, path, world.b.key, json=make(a, version_id))
        missing = world.call(method, path, world.b.key, json=make(none, uuid.uuid4().hex))
        assert 400 <= r.status_code < 500, f"{path} {make(a, version_id)}: {r.status_code} {r.text}"
        assert (r.status_code, _code(r)) == (missing.status_code, _code(missing)), (
            f"{method} {path} naming A's object answers {r.status_code} {r.text[:200]} but"
            f" naming nothing answers {missing.status_code} {missing.text[:200]}"
        )
        assert_no_markers(r, a, f"{method} {path}", sent=r.request.content.decode())
    assert len(_by_status(world, world.b)[1]) == before, "a refused request created a job"


# ---- roles -------------------------------------------------------------------------------
#: routes above the member role (everything else: any member; GETs: viewers too)
ADMIN_OPS = [
    ("POST", "/v1/projects"),
    ("PATCH", "/v1/projects/{ref}"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("GET", "/v1/audit"),
]
SUPERUSER_OPS = [
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("PATCH", "/v1/tenants/{tenant_id}"),
]


#: valid bodies, so that only the role can make the request fail
ROLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/projects"): {"json": {"name": "made-by-a-lower-role"}},
    ("POST", "/v1/keys"): {"json": {"name": "made-by-a-lower-role", "role": "viewer"}},
    ("POST", "/v1/tenants"): {"json": {"id": "made-by-a-lower-role", "name": "x"}},
}


@pytest.mark.parametrize(("method", "path"), ADMIN_OPS + SUPERUSER_OPS, ids=_id)
def test_role_below_the_route_is_403(world: World, method: str, path: str) -> None:
    roles = ["viewer", "member", "operator"]
    if (method, path) in SUPERUSER_OPS:
        roles.append("admin")
    for role in roles:
        key = world.keys[role]
        body = ROLE_BODIES.get((method, path)) or body_for(method, path, world.a, strict=True)
        r = world.call(method, fill(path, world.a), key, **body)
        assert r.status_code == 403, f"{method} {path} with a {role} key: {r.status_code} {r.text}"
        assert _code(r) == "FORBIDDEN"


def test_keys_cannot_outrank_their_creator(world: World) -> None:
    r = world.call(
        "POST", "/v1/keys", world.keys["admin"], json={"name": "up", "role": "superuser"}
    )
    assert r.status_code == 403, r.text
    r = world.call(
        "POST", "/v1/keys", world.b.key, json={"name": "x", "role": "member", "tenant": "default"}
    )
    assert r.status_code == 403, r.text


def test_members_change_only_their_own_jobs_operators_any(world: World) -> None:
    owner, other, operator = world.keys["member"], world.keys["member2"], world.keys["operator"]
    later = {"entrypoint": "true", "scheduled_at": "2999-01-01T00:00:00Z"}
    job = _ok(world.call("POST", "/v1/jobs", owner, json=later), 201).json()
    r = world.call("POST", f"/v1/jobs/{job['id']}/cancel", other)
    assert r.status_code == 403 and _code(r) == "FORBIDDEN", r.text
    assert world.call("GET", f"/v1/jobs/{job['id']}", owner).json()["status"] == "scheduled"
    r = _ok(
        world.call("POST", f"/v1/jobs/{job['id']}/cancel", operator, json={"reason": "ops"}), 202
    )
    assert r.json()["status"] == "cancelled"
    # retrying someone else's ended job is the same rule
    r = world.call("POST", f"/v1/jobs/{job['id']}/retry", other)
    assert r.status_code == 403, r.text
    audit = _ok(world.call("GET", "/v1/audit", world.a.key), 200).json()["items"]
    entries = [e for e in audit if e["target"] == job["id"]]
    assert entries, f"no audit row for the operator's cancel: {audit[:5]}"
    assert entries[0]["action"] == "job.cancelling"
    assert entries[0]["actor_key_id"] == world.key_ids["operator"]
    b_audit = _ok(world.call("GET", "/v1/audit", world.b.key), 200).text
    assert job["id"] not in b_audit and world.key_ids["operator"] not in b_audit
    # the owner itself may cancel its own job without an audit row
    own = _ok(world.call("POST", "/v1/jobs", owner, json=later), 201).json()
    _ok(world.call("POST", f"/v1/jobs/{own['id']}/cancel", owner), 202)
    audit = _ok(world.call("GET", "/v1/audit", world.a.key), 200).json()["items"]
    assert own["id"] not in {e["target"] for e in audit}


def test_private_metrics_admit_the_default_tenants_admins_only(world: World) -> None:
    """With ``metrics_public=False`` (figures of all tenants), docs/how-to/operations.md: the key
    printed on first start (a superuser) or another admin key of the default tenant."""
    app = FastAPI()
    api_errors.install(app)
    metrics_route(app, world.server.services, public=False)

    async def scrape(keys: dict[str, str | None]) -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as c:
            out = {}
            for who, key in keys.items():
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                out[who] = (await c.get("/metrics", headers=headers)).status_code
            return out

    got = asyncio.run(
        scrape(
            {
                "none": None,
                "revoked": world.keys["revoked"],
                "member": world.keys["member"],
                "B's admin": world.b.key,
                "admin": world.keys["admin"],
                "superuser": world.root,
            }
        )
    )
    assert got == {
        "none": 401,
        "revoked": 401,
        "member": 403,
        "B's admin": 403,
        "admin": 200,
        "superuser": 200,
    }, (
        f"{got}: a superuser key of the default tenant (the key printed on first start)"
        " must be admitted like its admin keys (jobyard/api/metrics.py checks"
        " `principal.role is not Role.ADMIN`)"
    )


def test_a_job_cannot_read_other_tenants_files(world: World) -> None:
    """A job of tenant B looks around the node's data directory for every other job's
    directory, the storage and (after ``jobyard serve``'s first start)
    ``credentials.json`` with the superuser key: the sandbox shows it none of them."""
    require_sandbox()
    services = world.server.services
    write_credentials(services.settings.data_dir, world.server.url, world.root)  # as serve does
    script = (
        'cd "$JOBYARD_WORKDIR/../.."; ls;'
        ' for d in */; do [ "$d" = "$JOBYARD_JOB_ID/" ] && continue;'
        ' cat "$d"logs/*.log "$d"work/output/* 2>/dev/null; done;'
        " cat ../credentials.json 2>/dev/null; true"
    )
    job = _ok(world.call("POST", "/v1/jobs", world.b.key, json={"entrypoint": script}), 201).json()
    wait_for(
        lambda: world.call("GET", f"/v1/jobs/{job['id']}", world.b.key).json()["status"] in ENDED
    )
    log = _ok(world.call("GET", f"/v1/jobs/{job['id']}/logs", world.b.key), 200).text
    leaked = sorted(m for m in world.a.markers if m in log)
    if world.root in log:
        leaked.append("the superuser key from credentials.json")
    assert not leaked, (
        f"a job of tenant B read tenant A's {leaked} from the node's data directory"
        f" (the sandbox should show it only its own directory):\n{log[:1500]}"
    )


def test_viewer_may_not_report_on_a_running_job(world: World) -> None:
    """``POST /v1/jobs/{id}/report`` takes a job's own token or an API key, so its
    dependency skips the viewer rule of every other write: a viewer changes the job's
    progress. (The matrix case below only sees a 409 because that job has ended.)"""
    job = _ok(
        world.call("POST", "/v1/jobs", world.a.key, json={"entrypoint": "sleep 60"}), 201
    ).json()
    try:
        wait_for(
            lambda: (
                world.call("GET", f"/v1/jobs/{job['id']}", world.a.key).json()["status"]
                == "running"
            )
        )
        r = world.call(
            "POST",
            f"/v1/jobs/{job['id']}/report",
            world.keys["viewer"],
            json={"type": "progress", "percent": 42, "stage": "written by a viewer"},
        )
        progress = world.call("GET", f"/v1/jobs/{job['id']}", world.a.key).json().get("progress")
        assert r.status_code == 403, (
            f"a viewer key reported on a running job: {r.status_code} {r.text};"
            f" the job's progress is now {progress}"
        )
        member = world.call(
            "POST",
            f"/v1/jobs/{job['id']}/report",
            world.keys["member"],
            json={"type": "progress", "percent": 10},
        )
        assert member.status_code == 202, member.text
    finally:
        _ok(
            world.call("POST", f"/v1/jobs/{job['id']}/cancel", world.a.key, json={"force": True}),
            202,
        )
        wait_for(
            lambda: (
                world.call("GET", f"/v1/jobs/{job['id']}", world.a.key).json()["status"] in ENDED
            )
        )


# ---- (e): viewers only read (last: a missing check would change A's objects) -------------
@pytest.mark.parametrize(("method", "path"), WRITE_OPS, ids=_id)
def test_viewer_may_not_write(world: World, method: str, path: str) -> None:
    body = body_for(method, path, world.a, strict=False)
    r = world.call(method, fill(path, world.a), world.keys["viewer"], **body)
    assert r.status_code == 403, (
        f"{method} {fill(path, world.a)} with a viewer key of the object's own tenant"
        f" answered {r.status_code}: {r.text[:300]}"
    )
