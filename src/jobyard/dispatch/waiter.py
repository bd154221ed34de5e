"""One thread that waits for the exits of all running attempts: their pidfds in one
selector, so exits that arrive together are handled (and their ends written)
together. A handle without a pidfd is waited for in a thread of its own."""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from jobyard.executors.base import Handle

log = logging.getLogger("jobyard.dispatch")

T = TypeVar("T")


class ExitWaiter(Generic[T]):
    """Calls ``on_exits`` with ``(item, exit code)`` pairs of the processes that exited,
    in the waiter's thread, a batch at a time."""

    def __init__(self, on_exits: Callable[[list[tuple[T, int]]], None]) -> None:
        self._on_exits = on_exits
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._added: list[tuple[T, Handle, int]] = []
        self._exited: list[tuple[T, int]] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="jobyard-waiter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._poke()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def add(self, item: T, handle: Handle) -> None:
        """Watch ``handle``'s process; ``item`` comes back with its exit code."""
        fd = handle.exit_fd()
        if fd is None:
            threading.Thread(
                target=self._wait_in_thread, args=(item, handle), name="jobyard-wait", daemon=True
            ).start()
            return
        with self._lock:
            self._added.append((item, handle, fd))
        self._poke()

    def _wait_in_thread(self, item: T, handle: Handle) -> None:
        code = handle.wait(None)
        assert code is not None
        with self._lock:
            self._exited.append((item, code))
        self._poke()

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # closed at shutdown, or the pipe is full (a wake is pending)
            pass

    def _loop(self) -> None:
        while True:
            ready = self._selector.select()
            batch: list[tuple[T, int]] = []
            with self._lock:
                if self._stopping:
                    return
                for item, handle, fd in self._added:
                    self._selector.register(fd, selectors.EVENT_READ, (item, handle))
                self._added.clear()
                batch.extend(self._exited)
                self._exited.clear()
            for key, _ in ready:
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                item, handle = key.data
                code = handle.wait(0)
                if code is None:  # spurious wake-up
                    continue
                self._selector.unregister(key.fd)
                batch.append((item, code))
            if batch:
                try:
                    self._on_exits(batch)
                except Exception:
                    log.exception("handling the exits of %d jobs failed", len(batch))
