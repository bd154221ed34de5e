"""A background thread that calls ``tick()`` every interval (when ``wanted()``) until
stopped."""

from __future__ import annotations

import logging
import threading

from jobyard import errors

log = logging.getLogger("jobyard.periodic")


class Periodic:
    """Subclasses set ``name`` and implement :meth:`tick`; :meth:`start` and
    :meth:`stop` run it in a daemon thread. A database outage pauses, never stops it."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"jobyard-{self.name}", daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def wanted(self) -> bool:
        """Whether this interval's :meth:`tick` has anything to do (subclasses that can
        tell cheaply skip the rest)."""
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.wanted():
                    self.tick()
            except errors.StoreUnavailable as e:
                log.warning("%s paused: %s", self.name, e)
            except Exception:
                log.exception("%s error", self.name)
