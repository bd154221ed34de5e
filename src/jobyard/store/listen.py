"""Wake-ups across replicas: a PostgreSQL ``LISTEN`` on the queue channel.

A hint only, never needed for correctness: every node also polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from jobyard.store.database import Database
from jobyard.store.dialects import QUEUE_CHANNEL

log = logging.getLogger("jobyard.listen")


def queue_listener(db: Database, on_notify: Callable[[], None]) -> QueueListener | None:
    """A listener for ``db``, or None where the database has no notifications (SQLite)."""
    return QueueListener(db, on_notify) if db.dialect == "postgresql" else None


class QueueListener:
    """Calls ``on_notify`` whenever another process queues a job (PostgreSQL only)."""

    def __init__(self, db: Database, on_notify: Callable[[], None]) -> None:
        self.dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobyard-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)

    def _run(self) -> None:
        import psycopg  # only PostgreSQL nodes pay for it

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.on_notify()
            except psycopg.Error as e:
                log.warning("queue listener reconnecting: %s", e)
                self._stop.wait(1.0)
