"""Readiness: whether this node can serve requests, writes included. The database must
answer, accept a write (a probe that leaves nothing behind), and the data directory must
accept a small file (logs, job directories). The write probes run at most once per
``interval_s``; callers in between get the latest answer."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobyard.clock import Clock
from jobyard.store.database import Database
from jobyard.store.nodes import NodeStore

log = logging.getLogger("jobyard.readiness")

PROBE_BYTES = 4096


@dataclass(frozen=True)
class Readiness:
    reachable: bool  #: the database answers
    problems: dict[str, str] = field(default_factory=dict)  #: what cannot write, by part

    @property
    def ready(self) -> bool:
        return self.reachable and not self.problems


class ReadinessCheck:
    def __init__(
        self,
        *,
        db: Database,
        nodes: NodeStore,
        data_dir: Path,
        clock: Clock,
        interval_s: float = 1.0,
    ) -> None:
        self.db = db
        self.nodes = nodes
        self.data_dir = data_dir
        self.clock = clock
        self.interval_s = interval_s
        self._probe_id = f"probe-{secrets.token_hex(8)}"
        self._lock = threading.Lock()
        self._problems: dict[str, str] | None = None
        self._checked_at = 0.0

    def check(self) -> Readiness:
        """Whether the node is ready; the database is pinged on every call."""
        if not self.db.ping():
            return Readiness(reachable=False)
        return Readiness(reachable=True, problems=self._write_problems())

    def _write_problems(self) -> dict[str, str]:
        if self._problems is not None and time.monotonic() - self._checked_at < self.interval_s:
            return self._problems
        if not self._lock.acquire(blocking=self._problems is None):
            return self._problems or {}  # another caller is probing: its previous answer
        try:
            problems: dict[str, str] = {}
            if (db := self._probe_database()) is not None:
                problems["database"] = f"the database refuses writes: {db}"
            if (files := self._probe_data_dir()) is not None:
                problems["data_dir"] = f"the data directory is not writable: {files}"
            if problems != (self._problems or {}):
                log.warning("readiness: %s", "; ".join(problems.values()) or "writes work again")
            self._problems, self._checked_at = problems, time.monotonic()
            return problems
        finally:
            self._lock.release()

    def _probe_database(self) -> str | None:
        return self.nodes.probe_write(self._probe_id, self.clock.now())

    def _probe_data_dir(self) -> str | None:
        path = self.data_dir / f".write-probe-{os.getpid()}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            return f"{e.strerror or e} ({self.data_dir})"
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        return None
