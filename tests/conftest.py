"""Shared fixtures: one ``db_url`` fixture parametrised over a SQLite file and PostgreSQL,
runtimes with fast timings, and a real HTTP server on an ephemeral port."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn

from jobyard import Client
from jobyard.api.app import create_app
from jobyard.clock import Clock
from jobyard.domain.auth import Role
from jobyard.one_write import OneWriteProtocol
from jobyard.settings import Settings
from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.store.tables import metadata
from jobyard.wiring import Services, build_services

PG_URL = os.environ.get(
    "JOBYARD_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("JOBYARD_REQUIRE_POSTGRES") == "1"


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def _pg_reason() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as e:
        return f"PostgreSQL not reachable at {PG_URL} ({type(e).__name__}); set JOBYARD_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once."""
    reason = _pg_reason()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"jobyard_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    upgrade(db)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    db = Database(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with db.write() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobyard.db'}"
    url: str = request.getfixturevalue("pg_url")
    _truncate(url)
    return url


def fast_settings(data_dir: Path, db_url: str, **overrides: Any) -> Settings:
    base = Settings(
        data_dir=data_dir,
        database_url=db_url,
        slots=2,
        node_id="test-node",
        # tests make several tenants; where the host cannot sandbox jobs (not root, no
        # bubblewrap) they run unsandboxed: tests/security/test_sandbox.py says so
        allow_unsandboxed_jobs=True,
        heartbeat_interval_s=0.2,
        # a node fences its jobs after 4 s without a renewal: short, yet above the stalls
        # of a loaded CI machine (2 s killed healthy jobs there)
        lease_ttl_s=7.0,
        outage_tolerance_s=4.0,
        poll_interval_s=0.2,
        stop_grace_s=1.0,
        sample_interval_s=0.2,
        reap_interval_s=0.5,
    )
    return base.with_(**overrides)


ServicesFactory = Callable[..., Services]

#: ``tmp_path / GATES``: files a test creates for its jobs to wait on. Sandboxed jobs see
#: only their own directory, so the runtimes of ``make_services`` show them this one too
#: (read-only, through ``sandbox_read_only``).
GATES = "gates"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def make_services(tmp_path: Path, db_url: str) -> Iterator[ServicesFactory]:
    """Build (and by default start) runtimes on the test database; closed at teardown."""
    made: list[Services] = []

    def make(*, start: bool = True, clock: Clock | None = None, **overrides: Any) -> Services:
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(made)}")
        gates = tmp_path / GATES
        gates.mkdir(exist_ok=True)
        overrides.setdefault("sandbox_read_only", str(gates))  # jobs wait for files here
        port = _free_port()  # known before the server starts: jobs get JOBYARD_API_URL
        overrides.setdefault("port", port)
        overrides.setdefault("public_url", f"http://127.0.0.1:{overrides['port']}")
        settings = fast_settings(data_dir, db_url, **overrides)
        services = build_services(settings, clock=clock)
        made.append(services)
        if start:
            services.start()
        else:
            upgrade(services.db)
            services.auth.bootstrap()
        return services

    yield make
    for services in reversed(made):
        services.close()


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", services.settings.port))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(services), http=OneWriteProtocol, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        _, self.admin_key = services.auth.create_key(
            tenant_id="default", name="tester", role=Role.SUPERUSER
        )

    def start(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10)
        return self

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.admin_key)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Services], LiveServer]]:
    servers: list[LiveServer] = []

    def start(services: Services) -> LiveServer:
        server = LiveServer(services).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def live(make_services: ServicesFactory, serve: Callable[[Services], LiveServer]) -> LiveServer:
    """A started services (2 slots) behind a real HTTP server."""
    return serve(make_services())


@pytest.fixture
def client(live: LiveServer) -> Iterator[Client]:
    with live.client() as c:
        yield c
