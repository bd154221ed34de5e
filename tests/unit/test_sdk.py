"""The SDK against a fake server that follows docs/reference/api.md, reached in two ways: through
``httpx.MockTransport`` (``transport=``, so through httpx) and over a real loopback HTTP
server (the SDK's default transport for plain JSON requests, httpx for streams)."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import jobyard
from jobyard.sdk import (
    APIError,
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    Job,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServerUnavailable,
    StoreUnavailable,
    StreamEvent,
    Unauthenticated,
)
from jobyard.sdk.config import DEFAULT_URL, find_server, write_credentials

TOKEN = "tok-123"
URL = "http://jobyard.test"
SUBMIT_FIELDS = {
    "entrypoint",
    "name",
    "description",
    "job_type",
    "priority",
    "parameters",
    "metadata",
    "env",
    "timeout_s",
    "scheduled_at",
    "submitted_by",
    "submission_id",
}


def error(status: int, code: str, message: str, **details: Any) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message, "details": details})


class FakeServer:
    """Just enough of the /v1 API; every request is recorded."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # oldest first
        self.progress: dict[str, list[str]] = {}  # statuses the next GETs return
        self.idempotency: dict[str, str] = {}
        self.requests: list[httpx.Request] = []
        self.log = b"line 1\nline 2\nline 3\n"
        self.log_chunks: list[bytes] = [b"a\n", b"b\xc3", b"\xa9\n"]  # é split across chunks

    def add_job(self, **fields: Any) -> dict[str, Any]:
        job_id = f"job-{len(self.order) + 1}"
        job = {
            "id": job_id,
            "status": "queued",
            "priority": "normal",
            "created_at": "2030-01-01T10:00:00.123456Z",
            "attempt": 0,
            **fields,
        }
        self.jobs[job_id] = job
        self.order.append(job_id)
        return job

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "UNAUTHENTICATED", "a valid API key is required")
        if path == "/v1/jobs":
            return self.submit(request) if request.method == "POST" else self.list(request)
        parts = path.removeprefix("/v1/jobs/").split("/")
        job = self.jobs.get(parts[0])
        if job is None:
            return error(404, "NOT_FOUND", f"job {parts[0]} does not exist")
        action = parts[1] if len(parts) > 1 else ""
        if action == "" and request.method == "GET":
            if self.progress.get(job["id"]):
                job["status"] = self.progress[job["id"]].pop(0)
            return httpx.Response(200, json=job)
        if action == "cancel" and request.method == "POST":
            return self.cancel(job, request)
        if action == "logs":
            return self.logs(request)
        if action == "events":
            return self.events(job, request)
        return error(404, "NOT_FOUND", "no such route")

    def submit(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        unknown = set(body) - SUBMIT_FIELDS
        if unknown:
            return error(422, "VALIDATION_ERROR", f"unknown field {sorted(unknown)[0]}")
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotency:
            return httpx.Response(200, json=self.jobs[self.idempotency[key]])
        fields = {k: v for k, v in body.items() if k != "entrypoint"}
        entry = body["entrypoint"]
        job = self.add_job(
            entrypoint=entry if isinstance(entry, str) else None,
            argv=entry if isinstance(entry, list) else None,
            **fields,
        )
        if key:
            self.idempotency[key] = job["id"]
        return httpx.Response(201, json=job)

    def list(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        statuses = [s for v in q.get_list("status") for s in v.split(",")]
        ids = [
            i for i in reversed(self.order) if not statuses or self.jobs[i]["status"] in statuses
        ]
        start, limit = int(q.get("cursor", "0")), int(q.get("limit", "50"))
        page = ids[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(ids) else None
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
        return httpx.Response(
            200,
            json={
                "items": [self.jobs[i] for i in page],
                "next_cursor": next_cursor,
                "summary": {"total": len(self.jobs), "by_status": by_status},
            },
        )

    def cancel(self, job: dict[str, Any], request: httpx.Request) -> httpx.Response:
        if job["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
            return error(409, "INVALID_TRANSITION", f"job {job['id']} has ended")
        body = json.loads(request.content or b"{}")
        job["status"] = "cancelled" if body.get("force") else "cancelling"
        return httpx.Response(202, json=job)

    def logs(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        if q.get("follow") == "true":
            return httpx.Response(200, content=iter(self.log_chunks))
        if "tail" in q:
            lines = self.log.splitlines(keepends=True)[-int(q["tail"]) :]
            data = b"".join(lines)
            start = len(self.log) - len(data)
        else:
            start = int(q.get("offset", "0"))
            data = self.log[start:]
        headers = {"X-Log-Offset": str(start), "X-Log-Next-Offset": str(start + len(data))}
        return httpx.Response(200, content=data, headers=headers)

    def events(self, job: dict[str, Any], request: httpx.Request) -> httpx.Response:
        events: list[dict[str, Any]] = [
            {"seq": 1, "at": "2030-01-01T10:00:00Z", "kind": "state", "from_state": None,
             "to_state": "queued", "message": "Job submitted.", "data": {}},
            {"seq": 2, "at": "2030-01-01T10:00:01Z", "kind": "state", "from_state": "queued",
             "to_state": "running", "message": None, "data": {"pid": 1}},
        ]  # fmt: skip
        after = int(request.url.params.get("after", "0"))
        return httpx.Response(200, json={"items": [e for e in events if e["seq"] > after]})


Handler = Callable[[httpx.Request], httpx.Response]


class _Adapter(http.server.BaseHTTPRequestHandler):
    """Serves a ``Handler`` over HTTP/1.1 keep-alive (answers with Content-Length)."""

    protocol_version = "HTTP/1.1"
    server: _HandlerServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command, URL + self.path, headers=list(self.headers.items()), content=body
        )
        resp = self.server.handler(request)
        content = resp.read()
        self.send_response(resp.status_code)
        for name, value in resp.headers.multi_items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HandlerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Handler) -> None:
        super().__init__(("127.0.0.1", 0), _Adapter)
        self.handler = handler


@pytest.fixture(scope="module")
def http_server() -> Iterator[_HandlerServer]:
    """One loopback HTTP server for the module; each test sets its handler."""
    srv = _HandlerServer(lambda _: httpx.Response(500))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def serve_http(http_server: _HandlerServer) -> Callable[[Handler], str]:
    """A function that makes the loopback server answer with a handler; returns its URL."""

    def start(handler: Handler) -> str:
        http_server.handler = handler
        return f"http://127.0.0.1:{http_server.server_address[1]}"

    return start


def make_client(
    how: str, handler: Handler, serve_http: Callable[[Handler], str], token: str | None = TOKEN
) -> Client:
    """A client of ``handler``: through httpx's MockTransport, or over real HTTP."""
    if how == "mock":
        return Client(URL, token, transport=httpx.MockTransport(handler))
    c = Client(serve_http(handler), token)
    assert c._fast is not None  # the SDK's own transport serves the plain calls
    return c


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture(params=["mock", "http"])
def client(
    request: pytest.FixtureRequest, server: FakeServer, serve_http: Callable[[Handler], str]
) -> Iterator[Client]:
    with make_client(request.param, server.handler, serve_http) as c:
        yield c


def test_submit_argv_sends_contract_body_and_headers(client: Client, server: FakeServer) -> None:
    job = client.submit(
        ["python3", "-c", "print('hi')"],
        name="hello",
        priority="high",
        parameters={"threshold": 0.7},
        env={"REGION": "eu"},
        timeout_s=60,
        scheduled_at=datetime(2030, 1, 1, 10, 0, tzinfo=UTC),
        idempotency_key="key-1",
    )
    request = server.requests[-1]
    assert (request.method, request.url.path) == ("POST", "/v1/jobs")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert json.loads(request.content) == {
        "entrypoint": ["python3", "-c", "print('hi')"],
        "name": "hello",
        "priority": "high",
        "parameters": {"threshold": 0.7},
        "env": {"REGION": "eu"},
        "timeout_s": 60,
        "scheduled_at": "2030-01-01T10:00:00Z",
    }
    assert isinstance(job, Job)
    assert job.argv == ["python3", "-c", "print('hi')"] and job.entrypoint is None
    assert job.created_at == datetime(2030, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_submit_string_entrypoint_and_idempotent_repeat(client: Client, server: FakeServer) -> None:
    first = client.submit("echo hi", idempotency_key="k")
    again = client.submit("echo hi", idempotency_key="k")
    assert json.loads(server.requests[0].content) == {"entrypoint": "echo hi", "priority": "normal"}
    assert first.id == again.id and first.entrypoint == "echo hi"
    client.submit("echo")
    assert "Idempotency-Key" not in server.requests[-1].headers
    assert len(server.jobs) == 2


def test_unknown_job_fields_are_kept(client: Client, server: FakeServer) -> None:
    server.add_job(shiny_new_field={"x": 1}, usage={"cpu_percent": 1.5, "rss_bytes": 10})
    job = client.get("job-1")
    assert job.model_extra == {"shiny_new_field": {"x": 1}}
    assert job.usage is not None and job.usage.rss_bytes == 10


def test_not_found_carries_code_message_and_status(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        client.get("nope")
    assert info.value.status_code == 404
    assert info.value.code == "NOT_FOUND"
    assert info.value.message == "job nope does not exist"


def test_job_ids_are_quoted_in_paths(client: Client, server: FakeServer) -> None:
    with pytest.raises(NotFound):
        client.get("../admin")
    assert server.requests[-1].url.raw_path == b"/v1/jobs/..%2Fadmin"


@pytest.mark.parametrize("how", ["mock", "http"])
@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        (error(401, "UNAUTHENTICATED", "no key"), Unauthenticated, "UNAUTHENTICATED"),
        (error(403, "FORBIDDEN", "viewer"), Forbidden, "FORBIDDEN"),
        (error(409, "INVALID_TRANSITION", "ended"), InvalidTransition, "INVALID_TRANSITION"),
        (error(409, "IDEMPOTENCY_KEY_REUSED", "x"), IdempotencyConflict, "IDEMPOTENCY_KEY_REUSED"),
        (error(409, "SOMETHING_NEW", "x"), Conflict, "SOMETHING_NEW"),
        (error(413, "PAYLOAD_TOO_LARGE", "big"), PayloadTooLarge, "PAYLOAD_TOO_LARGE"),
        (error(422, "VALIDATION_ERROR", "name", errors=[1]), InvalidInput, "VALIDATION_ERROR"),
        (error(429, "QUOTA_EXCEEDED", "limit"), QuotaExceeded, "QUOTA_EXCEEDED"),
        (error(429, "RATE_LIMITED", "slow down"), RateLimited, "RATE_LIMITED"),
        (error(503, "STORE_UNAVAILABLE", "db"), StoreUnavailable, "STORE_UNAVAILABLE"),
        (httpx.Response(502, text="Bad gateway\nfrom proxy"), ServerUnavailable, "HTTP_502"),
        (httpx.Response(418, text="teapot"), APIError, "HTTP_418"),
    ],
)
def test_error_answers_map_to_classes(
    response: httpx.Response,
    cls: type[APIError],
    code: str,
    how: str,
    serve_http: Callable[[Handler], str],
) -> None:
    with make_client(how, lambda _: response, serve_http) as c:
        with pytest.raises(cls) as info:
            c.get("x")
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.status_code == response.status_code
    assert info.value.message  # never empty; text bodies give their first line
    if response.status_code == 502:
        assert info.value.message == "HTTP 502: Bad gateway"
    if code == "VALIDATION_ERROR":
        assert info.value.details == {"errors": [1]}


@pytest.mark.parametrize("how", ["mock", "http"])
def test_retry_after_is_read(how: str, serve_http: Callable[[Handler], str]) -> None:
    resp = httpx.Response(
        503, json={"code": "STORE_UNAVAILABLE", "message": "db"}, headers={"Retry-After": "3"}
    )
    with make_client(how, lambda _: resp, serve_http) as c:
        with pytest.raises(StoreUnavailable) as info:
            c.submit("true")
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize("how", ["mock", "http"])
def test_missing_token_is_unauthenticated(
    server: FakeServer, monkeypatch: Any, how: str, serve_http: Callable[[Handler], str]
) -> None:
    monkeypatch.delenv("JOBYARD_API_KEY", raising=False)
    monkeypatch.setenv("JOBYARD_HOME", "/nonexistent-jobyard-home")
    with make_client(how, server.handler, serve_http, token=None) as c:
        with pytest.raises(Unauthenticated):
            c.get("job-1")
    assert "Authorization" not in server.requests[-1].headers


def test_connection_error_names_url_and_how_to_start() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with Client(URL, TOKEN, transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(ConnectionFailed) as info:
            c.get("x")
        assert not c.health()
    assert isinstance(info.value, ServerUnavailable)
    assert URL in info.value.message
    assert "jobyard serve" in info.value.message and "JOBYARD_URL" in info.value.message


def test_health(client: Client) -> None:
    assert client.health()


def test_wait_returns_the_terminal_job(client: Client, server: FakeServer) -> None:
    job = server.add_job()
    server.progress[job["id"]] = ["queued", "running", "running", "succeeded"]
    seen: list[str] = []
    final = client.wait(job["id"], poll_interval=0, on_update=lambda j: seen.append(j.status))
    assert final.status == "succeeded" and final.is_terminal
    assert seen == ["queued", "running", "running", "succeeded"]


def test_wait_times_out(client: Client, server: FakeServer) -> None:
    job = server.add_job(status="running")
    with pytest.raises(TimeoutError, match="still running"):
        client.wait(job["id"], timeout=0, poll_interval=0)


def test_watch_without_a_stream_polls_like_wait(client: Client, server: FakeServer) -> None:
    """The fake server has no event stream: ``watch`` falls back to ``wait``'s loop and
    passes each change of status on as a ``state`` event."""
    job = server.add_job()
    server.progress[job["id"]] = ["queued", "running", "running", "failed"]
    seen: list[StreamEvent] = []
    final = client.watch(job["id"], seen.append, poll_interval=0)
    assert final.status == "failed"
    changes = [(e.kind, e.data["from_state"], e.to_state) for e in seen]
    assert changes == [
        ("state", None, "queued"),
        ("state", "queued", "running"),
        ("state", "running", "failed"),
    ]
    gets = [r for r in server.requests if r.url.path == f"/v1/jobs/{job['id']}"]
    assert len(gets) == 4  # one GET per poll, none after the end


def test_list_sends_filters(client: Client, server: FakeServer) -> None:
    client.list(
        status=["queued", "running"],
        priority="high",
        job_type="etl",
        submitted_by="ann",
        created_from=datetime(2030, 1, 1, tzinfo=UTC),
        created_to="2030-02-01T00:00:00Z",
        limit=10,
        cursor="5",
    )
    q = server.requests[-1].url.params
    assert q.get_list("status") == ["queued", "running"]
    assert (q["priority"], q["job_type"], q["submitted_by"]) == ("high", "etl", "ann")
    assert q["created_from"] == "2030-01-01T00:00:00Z"
    assert q["created_to"] == "2030-02-01T00:00:00Z"
    assert (q["limit"], q["cursor"]) == ("10", "5")
    client.list(status="queued,running")
    assert server.requests[-1].url.params.get_list("status") == ["queued,running"]


def test_list_page_and_summary(client: Client, server: FakeServer) -> None:
    for status in ("queued", "succeeded", "succeeded"):
        server.add_job(status=status)
    page = client.list(status="succeeded")
    assert [j.id for j in page.items] == ["job-3", "job-2"]  # newest first
    assert page.next_cursor is None
    assert page.summary.total == 3
    assert page.summary.by_status == {"queued": 1, "succeeded": 2}


def test_iter_jobs_follows_cursors(client: Client, server: FakeServer) -> None:
    for _ in range(5):
        server.add_job()
    ids = [job.id for job in client.iter_jobs(limit=2)]
    assert ids == ["job-5", "job-4", "job-3", "job-2", "job-1"]
    cursors = [r.url.params.get("cursor") for r in server.requests]
    assert cursors == [None, "2", "4"]


def test_cancel(client: Client, server: FakeServer) -> None:
    job = server.add_job(status="running")
    assert client.cancel(job["id"], reason="no longer needed").status == "cancelling"
    request = server.requests[-1]
    assert request.url.path == f"/v1/jobs/{job['id']}/cancel"
    assert json.loads(request.content) == {"force": False, "reason": "no longer needed"}
    server.jobs[job["id"]]["status"] = "succeeded"
    with pytest.raises(InvalidTransition):
        client.cancel(job["id"], force=True)


def test_logs_offset_and_tail(client: Client, server: FakeServer) -> None:
    server.add_job()
    assert client.logs("job-1") == "line 1\nline 2\nline 3\n"
    assert client.logs("job-1", offset=7) == "line 2\nline 3\n"
    chunk = client.read_logs("job-1", tail=1)
    assert (chunk.text, chunk.offset, chunk.next_offset) == ("line 3\n", 14, 21)
    assert server.requests[-1].url.params["tail"] == "1"


def test_follow_logs_streams_until_closed(client: Client, server: FakeServer) -> None:
    server.add_job()
    text = "".join(client.follow_logs("job-1", offset=3))
    assert text == "a\nbé\n"
    q = server.requests[-1].url.params
    assert (q["follow"], q["offset"]) == ("true", "3")


def test_follow_logs_of_unknown_job(client: Client) -> None:
    with pytest.raises(NotFound):
        list(client.follow_logs("nope"))


def test_events(client: Client, server: FakeServer) -> None:
    server.add_job()
    events = client.events("job-1")
    assert [(e.seq, e.to_state) for e in events] == [(1, "queued"), (2, "running")]
    assert events[0].at == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert [e.seq for e in client.events("job-1", after=1)] == [2]


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("queued", False), ("cancelling", False), ("succeeded", True), ("failed", True),
     ("timed_out", True), ("cancelled", True)],
)  # fmt: skip
def test_is_terminal(status: str, terminal: bool) -> None:
    assert Job(id="x", status=status).is_terminal is terminal


def test_package_exports_client() -> None:
    assert jobyard.Client is Client
    assert jobyard.__version__ == "0.1.0"


# -- finding the server ---------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    write_credentials(tmp_path, "http://from-file:9000/", "file-key")
    return tmp_path


def test_find_server_order(home: Path) -> None:
    env = {"JOBYARD_HOME": str(home)}
    assert find_server(environ=env) == ("http://from-file:9000", "file-key")
    env |= {"JOBYARD_URL": "http://from-env:1", "JOBYARD_API_KEY": "env-key"}
    assert find_server(environ=env) == ("http://from-env:1", "env-key")
    assert find_server("http://arg:2", "arg-key", environ=env) == ("http://arg:2", "arg-key")
    # each value on its own: an explicit URL still takes the key from the environment
    assert find_server("http://arg:2", environ=env) == ("http://arg:2", "env-key")
    assert find_server(environ={"JOBYARD_HOME": str(home), "JOBYARD_URL": "http://e:3"}) == (
        "http://e:3",
        "file-key",
    )


def test_find_server_defaults(tmp_path: Path) -> None:
    assert find_server(environ={"JOBYARD_HOME": str(tmp_path)}) == (DEFAULT_URL, None)
    (tmp_path / "credentials.json").write_text("not json")
    assert find_server(environ={"JOBYARD_HOME": str(tmp_path)}) == (DEFAULT_URL, None)


def test_find_server_default_home_is_dot_jobyard(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    write_credentials(tmp_path / ".jobyard", "http://local:8000", "k")
    assert find_server(environ={}) == ("http://local:8000", "k")


def test_client_without_arguments_uses_find_server(home: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("JOBYARD_URL", raising=False)
    monkeypatch.delenv("JOBYARD_API_KEY", raising=False)
    monkeypatch.setenv("JOBYARD_HOME", str(home))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "j", "status": "queued"})

    with Client(transport=httpx.MockTransport(handler)) as c:
        c.get("j")
    assert str(seen[0].url) == "http://from-file:9000/v1/jobs/j"
    assert seen[0].headers["Authorization"] == "Bearer file-key"


def test_write_credentials_is_private_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "data"
    path = write_credentials(target, "http://a:1", "k1")
    assert path == target / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://a:1", "api_key": "k1"}
    write_credentials(target, "http://b:2", "k2")
    assert json.loads(path.read_text())["api_key"] == "k2"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in target.iterdir()) == ["credentials.json"]  # no temp files
