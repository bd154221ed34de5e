"""A private PostgreSQL server that a test may stop and start (a database outage),
never the shared server of ``JOBYARD_TEST_POSTGRES_URL``.

It lives in a temporary directory of its own (``initdb``), listens on 127.0.0.1 on a
free port, trusts local connections, and runs with ``fsync=off`` (tests only). As root,
the server runs as the ``postgres`` OS user (PostgreSQL refuses to run as root)::

    reason = private_pg.unavailable()          # None, or why it cannot run here
    with private_pg.PrivatePostgres() as pg:   # initdb + start; stopped and removed at exit
        url = pg.create_database("jobyard")    # a SQLAlchemy URL
        pg.stop()                              # returns once connections are refused
        pg.start()                             # returns once it accepts them again

The binaries come from ``$JOBYARD_TEST_PG_BIN`` (default ``/usr/lib/postgresql/15/bin``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psycopg

BIN = Path(os.environ.get("JOBYARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"  #: the server's OS user when the tests run as root
TIMEOUT_S = 60


def unavailable() -> str | None:
    """Why a private server cannot be started here, or None."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"no PostgreSQL binaries in {BIN} (set JOBYARD_TEST_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running PostgreSQL as root needs runuser (util-linux)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"no OS user {OS_USER!r} to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """One PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jobyard-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        if os.geteuid() == 0:
            os.chown(self.root, *_ids(OS_USER))
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()

    # ---- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the server; returns once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off"
        )
        self._pg_ctl("start", "-o", options, "-l", str(self.log))
        self._until(self.accepts, "the server to accept connections")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut); returns once connections
        are refused."""
        self._pg_ctl("stop", "-m", "fast")
        self._until(lambda: not self.accepts(), "the server to refuse connections")

    def accepts(self) -> bool:
        """Whether the server accepts connections now."""
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        """Stop the server at once and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- databases ----------------------------------------------------------------------
    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` (dropping an older one); its SQLAlchemy URL."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, database: str, sql: str) -> None:
        """Run ``sql`` on ``database`` in autocommit mode (ALTER SYSTEM, e.g.)."""
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql)

    # ---- helpers -------------------------------------------------------------------------
    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", str(TIMEOUT_S), *args, check=check)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        cmd = [str(BIN / program), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S + 30)
        if check and done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log[-2000:]}"
            )

    @staticmethod
    def _until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {TIMEOUT_S} s waiting for {what}")
            time.sleep(0.05)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
