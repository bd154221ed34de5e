"""The SDK's keep-alive transport against the real server (the jobyard app on uvicorn):
connection reuse, reconnects, errors as with httpx, TLS, and threads."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from jobyard.api.app import create_app
from jobyard.domain.auth import Role
from jobyard.sdk import (
    APIError,
    Client,
    ConnectionFailed,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Unauthenticated,
)
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory, wait_for


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about the client, not the database."""
    return f"sqlite:///{tmp_path / 'jobyard.db'}"


@pytest.fixture
def idle(make_services: ServicesFactory, serve: Callable[[Services], LiveServer]) -> LiveServer:
    """A server whose dispatcher does not run: submitted jobs stay queued."""
    return serve(make_services(start=False))


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection the process opens (the address it connects to)."""
    opened: list[tuple[str, int]] = []
    original = socket.create_connection

    def counting(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return original(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


def test_many_calls_use_one_connection(idle: LiveServer, connects: list[tuple[str, int]]) -> None:
    with idle.client() as c:
        assert c._fast is not None
        jobs = [c.submit(["true"], name=f"j{n}") for n in range(20)]
        assert c.get(jobs[0].id).name == "j0"
        assert c.list(limit=5).summary.total == 20
        assert c.cancel(jobs[1].id).status == "cancelled"
        assert c.logs(jobs[2].id) == ""
        assert c.events(jobs[1].id)[-1].to_state == "cancelled"
        assert c.health()
        assert len(idle.server.server_state.connections) == 1  # what uvicorn sees
    assert len(connects) == 1


def _drop_server_connections(live: LiveServer) -> None:
    """Make uvicorn close its idle keep-alive connections, as its keep-alive timeout does."""
    for protocol in list(live.server.server_state.connections):
        protocol.loop.call_soon_threadsafe(protocol.shutdown)
    wait_for(lambda: not live.server.server_state.connections)


def test_reconnects_after_the_server_closed_the_idle_connection(
    idle: LiveServer, connects: list[tuple[str, int]]
) -> None:
    with idle.client() as c:
        job = c.submit(["true"])
        _drop_server_connections(idle)
        assert c.get(job.id).id == job.id
        assert c.submit(["true"]).id != job.id
        assert c.list().summary.total == 2  # nothing was sent twice
    assert len(connects) == 2


def _error(call: Callable[[], object]) -> tuple[type[APIError], int | None, str, str, Any]:
    with pytest.raises(APIError) as info:
        call()
    e = info.value
    return type(e), e.status_code, e.code, e.message, e.details


def test_error_answers_are_the_same_as_through_httpx(idle: LiveServer) -> None:
    fast = idle.client()
    slow = Client(idle.url, idle.admin_key, transport=httpx.HTTPTransport())
    bad_key = Client(idle.url, "not-a-key")
    bad_key_slow = Client(idle.url, "not-a-key", transport=httpx.HTTPTransport())
    with fast, slow, bad_key, bad_key_slow:
        assert fast._fast is not None and slow._fast is None
        ended = fast.cancel(fast.submit(["true"], idempotency_key="k").id).id
        cases: list[tuple[type[APIError], Callable[[Client], object]]] = [
            (NotFound, lambda c: c.get("nope")),
            (InvalidInput, lambda c: c.submit(["true"], priority="bogus")),
            (InvalidTransition, lambda c: c.cancel(ended)),
            (IdempotencyConflict, lambda c: c.submit(["false"], idempotency_key="k")),
        ]
        for cls, call in cases:
            ours = _error(partial(call, fast))
            assert ours[0] is cls
            assert ours == _error(partial(call, slow))
        ours = _error(lambda: bad_key.get("x"))
        assert ours[0] is Unauthenticated
        assert ours == _error(lambda: bad_key_slow.get("x"))


def test_a_stopped_server_gives_the_same_connection_error(idle: LiveServer) -> None:
    fast = idle.client()
    slow = Client(idle.url, idle.admin_key, transport=httpx.HTTPTransport())
    with fast, slow:
        fast.health(), slow.health()  # both hold a kept-alive connection now
        idle.stop()
        messages = []
        for c in (fast, slow):
            with pytest.raises(ConnectionFailed) as info:
                c.submit(["true"])
            messages.append(info.value.message)
            assert not c.health()
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"cannot reach the jobyard server at {idle.url} (")


def test_one_client_from_many_threads(idle: LiveServer, connects: list[tuple[str, int]]) -> None:
    threads, calls = 8, 20
    start = threading.Barrier(threads)
    ids: list[str] = []
    errors: list[BaseException] = []
    with idle.client() as c:

        def work(t: int) -> None:
            try:
                start.wait()
                for n in range(calls):
                    job = c.submit(["true"], name=f"t{t}-{n}")
                    assert c.get(job.id).name == f"t{t}-{n}"
                    ids.append(job.id)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert len(set(ids)) == threads * calls
        assert c.list(limit=1).summary.total == threads * calls
    assert 1 <= len(connects) <= threads


# -- TLS ------------------------------------------------------------------------


@pytest.fixture
def tls_server(make_services: ServicesFactory, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The app on uvicorn over TLS with a self-signed certificate for 127.0.0.1:
    yields (url, admin key, certificate file)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    services = make_services(start=False)
    _, admin_key = services.auth.create_key(tenant_id="default", name="t", role=Role.SUPERUSER)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(services),
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    yield f"https://127.0.0.1:{sock.getsockname()[1]}", admin_key, cert
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_https_works_and_verifies_the_certificate(
    tls_server: tuple[str, str, Path],
    connects: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, key, cert = tls_server
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, as httpx reads it
    with Client(url, key) as c:
        assert c._fast is not None
        job = c.submit(["true"])
        assert c.get(job.id).id == job.id
        assert c.list().summary.total == 1
    assert len(connects) == 1
    monkeypatch.delenv("SSL_CERT_FILE")  # now the self-signed certificate is not trusted
    messages = []
    for transport in (None, httpx.HTTPTransport()):
        with Client(url, key, transport=transport) as c, pytest.raises(ConnectionFailed) as info:
            c.get(job.id)
        messages.append(info.value.message)
    assert messages[0] == messages[1]
    assert "CERTIFICATE_VERIFY_FAILED" in messages[0]
