"""A private PostgreSQL server for the restart scenario: ``initdb`` in a temporary
directory, a free port on 127.0.0.1, its socket in that directory; stopped and removed on
exit. The shared server on 5432 is never touched. When run as root, the PostgreSQL
binaries run as the ``postgres`` OS user (``runuser``)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port
from bench.faults.common import on_cleanup, temp_dir

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def why_not() -> str | None:
    """None when a private server can be started, else why not."""
    if not (PG_BIN / "initdb").exists():
        return f"no initdb in {PG_BIN} (set FAULTS_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres OS user"
    return None


@dataclass
class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` on a free port; ``url`` is a SQLAlchemy URL of db ``jobyard``."""

    root: Path
    port: int
    _remove: Callable[[], None]
    close: Callable[[], None] = lambda: None  #: stop and remove it (set by ``create``)

    @classmethod
    def create(cls) -> PrivatePostgres:
        root, remove = temp_dir("jobyard-faults-pg-")
        pg = cls(root, free_port(), remove)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(root, entry.pw_uid, entry.pw_gid)
        pg._run(PG_BIN / "initdb", "-D", str(pg.data), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8")  # fmt: skip
        pg.close = on_cleanup(f"private postgres {root}", pg.destroy)
        pg.start()
        pg._run(PG_BIN / "createdb", "-h", str(pg.root), "-p", str(pg.port), "-U", "postgres",
                "jobyard")  # fmt: skip
        return pg

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/jobyard"

    def _run(self, *argv: object) -> None:
        cmd = [str(a) for a in argv]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "pg.log", "-w",
                  "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect every client at once)."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        self._remove()
        shutil.rmtree(self.root, ignore_errors=True)
