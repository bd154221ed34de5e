"""One thread that waits for the exits of all running attempts: their pidfds in one
epoll set, so exits that arrive together are handled (and their ends written)
together. A handle without a pidfd is waited for in a thread of its own.

A new pidfd is added to the set by the thread that started the attempt, while the
waiter may be blocked in ``epoll_wait``: the kernel allows that, and reports the fd
once it is ready (also if it already is), so a start does not wake the waiter."""

from __future__ import annotations

import logging
import os
import select
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
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[T, Handle]] = {}  #: pidfd -> what it is for
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
        with self._lock:
            self._epoll.close()
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
            if self._stopping:
                return
            self._watched[fd] = (item, handle)
            self._epoll.register(fd, select.EPOLLIN)

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
            ready = self._epoll.poll()
            batch: list[tuple[T, int]] = []
            with self._lock:
                if self._stopping:
                    return
                batch.extend(self._exited)
                self._exited.clear()
                watched = [(fd, self._watched.get(fd)) for fd, _ in ready]
            for fd, entry in watched:
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                if entry is None:
                    continue
                item, handle = entry
                code = handle.wait(0)
                if code is None:  # spurious wake-up
                    continue
                with self._lock:  # before its handle's cleanup closes (and frees) the fd
                    self._epoll.unregister(fd)
                    del self._watched[fd]
                batch.append((item, code))
            if batch:
                try:
                    self._on_exits(batch)
                except Exception:
                    log.exception("handling the exits of %d jobs failed", len(batch))
