"""``/readyz`` over real HTTP says whether the node can write: the database must accept a
write and the data directory a file; 503 naming what fails, 200 again once it works."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jobyard.store.database import Database
from jobyard.store.migrate import upgrade
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory, wait_for
from tests.support import private_pg
from tests.support.private_pg import PrivatePostgres

Serve = Callable[[Services], LiveServer]


def readyz(server: LiveServer) -> httpx.Response:
    return httpx.get(server.url + "/readyz", timeout=30)


def is_ready(server: LiveServer) -> bool:
    return readyz(server).status_code == 200


def test_readyz_is_503_while_the_sqlite_database_refuses_writes(
    db_url: str, make_services: ServicesFactory, serve: Serve
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a lock held by another connection is SQLite's way to refuse writes")
    server = serve(make_services())
    assert readyz(server).status_code == 200
    locker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # every writer waits out its busy timeout, then fails
    try:
        answer = wait_for(lambda: (r := readyz(server)).status_code == 503 and r, timeout=30)
        assert answer.headers["retry-after"] == "1"
        body = answer.json()
        assert body["code"] == "NOT_READY"
        assert body["details"]["database"] == "the database refuses writes: database is locked"
        assert "data_dir" not in body["details"]
        assert body["message"] == "the database refuses writes: database is locked"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_for(lambda: is_ready(server), timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` up; the filler file (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for size in (65536, 512):  # then the last partial pages
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (disk / "one-more").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize("db_on_it", [False, True], ids=["db-elsewhere", "db-on-the-full-disk"])
def test_readyz_is_503_while_the_disk_is_full(
    db_url: str,
    tmp_path: Path,
    small_disk: Path,
    make_services: ServicesFactory,
    serve: Serve,
    db_on_it: bool,
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a full disk under a SQLite database and the data directory")
    data_dir = small_disk / "data"
    database = (data_dir if db_on_it else tmp_path) / "jobyard.db"
    server = serve(make_services(data_dir=data_dir, database_url=f"sqlite:///{database}"))
    assert readyz(server).status_code == 200
    filler = fill(small_disk)
    answer = wait_for(lambda: (r := readyz(server)).status_code == 503 and r, timeout=30)
    assert answer.json()["code"] == "NOT_READY"
    full = {"data_dir": f"the data directory is not writable: No space left on device ({data_dir})"}
    if db_on_it:  # a fresh database's log grows with each commit: SQLite refuses it
        full["database"] = "the database refuses writes: database or disk is full"
    details = answer.json()["details"]
    assert {k: details[k] for k in ("data_dir", "database") if k in details} == full
    filler.unlink()
    wait_for(lambda: is_ready(server), timeout=30)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PrivatePostgres]:
    reason = private_pg.unavailable()
    if reason:
        pytest.skip(reason)
    with PrivatePostgres() as pg:
        yield pg


def test_readyz_is_503_while_postgres_refuses_writes(
    db_url: str, pg_server: PrivatePostgres, make_services: ServicesFactory, serve: Serve
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("runs once, on the private PostgreSQL server")
    url = pg_server.create_database("ready")
    db = Database(url)
    upgrade(db)
    db.dispose()
    server = serve(make_services(database_url=url, run_dispatcher=False))
    assert readyz(server).status_code == 200
    pg_server.execute("postgres", "ALTER SYSTEM SET default_transaction_read_only = on")
    pg_server.execute("postgres", "SELECT pg_reload_conf()")
    try:
        answer = wait_for(lambda: (r := readyz(server)).status_code == 503 and r, timeout=30)
        assert answer.json()["details"]["database"] == (
            "the database refuses writes: cannot execute INSERT in a read-only transaction"
        )
    finally:
        pg_server.execute("postgres", "ALTER SYSTEM RESET default_transaction_read_only")
        pg_server.execute("postgres", "SELECT pg_reload_conf()")
    wait_for(lambda: is_ready(server), timeout=30)
