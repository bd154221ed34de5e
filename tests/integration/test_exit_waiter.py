"""The exit waiter against real subprocesses: pidfds added by other threads while it
waits, exits reported once each with their codes, handles without a pidfd."""

from __future__ import annotations

import os
import queue
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobyard.dispatch.waiter import ExitWaiter
from jobyard.executors.base import LaunchSpec
from jobyard.executors.local import LocalExecutor, LocalHandle

PATH = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])
#: exits until ./go exists in its working directory, with the code it is given
WAIT_FOR_GO = 'while [ ! -e go ]; do sleep 0.01; done; exit "$0"'
TIMEOUT_S = 10.0


class NoPidfd(LocalHandle):
    """A handle the waiter must wait for in a thread of its own."""

    def exit_fd(self) -> int | None:
        return None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str, str], LocalHandle]]:
    """Start ``sh -c <script> <arg>`` in ``tmp_path``; killed at teardown."""
    handles: list[LocalHandle] = []

    def _start(script: str, arg: str) -> LocalHandle:
        spec = LaunchSpec(
            job_id=f"job-{len(handles)}",
            attempt=1,
            entrypoint=None,
            argv=("/bin/sh", "-c", script, arg),
            workdir=tmp_path,
            log_path=tmp_path / f"job-{len(handles)}.log",
            env={"PATH": PATH},
        )
        handles.append(LocalExecutor().start(spec))
        return handles[-1]

    yield _start
    for handle in handles:
        handle.stop(0, force=True)
        handle.cleanup()


@pytest.fixture
def exits() -> Iterator[tuple[ExitWaiter[str], queue.Queue[tuple[str, int]]]]:
    """A started waiter whose reported exits land in the queue."""
    reported: queue.Queue[tuple[str, int]] = queue.Queue()

    def on_exits(batch: list[tuple[str, int]]) -> None:
        for pair in batch:
            reported.put(pair)

    waiter: ExitWaiter[str] = ExitWaiter(on_exits)
    waiter.start()
    yield waiter, reported
    waiter.stop()


def take(reported: queue.Queue[tuple[str, int]], n: int) -> set[tuple[str, int]]:
    return {reported.get(timeout=TIMEOUT_S) for _ in range(n)}


def test_exits_added_while_the_waiter_waits_are_reported_once_each(
    start: Callable[[str, str], LocalHandle],
    exits: tuple[ExitWaiter[str], queue.Queue[tuple[str, int]]],
    tmp_path: Path,
) -> None:
    waiter, reported = exits
    done = start("exit 4", "x")
    os.waitid(os.P_PID, done.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    waiter.add("done-before", done)
    assert take(reported, 1) == {("done-before", 4)}

    # added while the waiter blocks with nothing to wait for but the added ones
    later = [start(WAIT_FOR_GO, str(code)) for code in (0, 3, 7)]
    for i, handle in enumerate(later):
        waiter.add(f"later-{i}", handle)
    (tmp_path / "go").touch()

    assert take(reported, 3) == {("later-0", 0), ("later-1", 3), ("later-2", 7)}
    assert reported.empty()


def test_a_handle_without_a_pidfd_is_waited_for_in_a_thread(
    exits: tuple[ExitWaiter[str], queue.Queue[tuple[str, int]]], tmp_path: Path
) -> None:
    waiter, reported = exits
    popen = subprocess.Popen(["/bin/sh", "-c", "exit 5"], start_new_session=True)
    handle = NoPidfd(popen, tmp_path / "job.log", psutil.Process(popen.pid))

    waiter.add("threaded", handle)

    assert take(reported, 1) == {("threaded", 5)}
    handle.cleanup()


def test_stop_is_idempotent_and_later_adds_are_ignored(
    start: Callable[[str, str], LocalHandle],
    exits: tuple[ExitWaiter[str], queue.Queue[tuple[str, int]]],
) -> None:
    waiter, reported = exits
    waiter.stop()
    waiter.stop()

    waiter.add("late", start("exit 0", "x"))

    assert reported.empty()
