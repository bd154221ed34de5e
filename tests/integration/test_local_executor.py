"""The local executor against real subprocesses (no mocks)."""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from jobyard.errors import ExecutorError
from jobyard.executors import local
from jobyard.executors.base import LaunchSpec
from jobyard.executors.local import LocalExecutor, LocalHandle
from tests.support import procs

PATH = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])

# A python child that ignores SIGTERM, starts `sleep 1000` (which inherits the ignored
# SIGTERM) and publishes "<own pid> <grandchild pid>" atomically in ./pids.
IGNORE_TERM_WITH_GRANDCHILD = textwrap.dedent(
    """
    import os, signal, subprocess
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "1000"])
    with open("pids.tmp", "w") as f:
        f.write(f"{os.getpid()} {grandchild.pid}")
    os.rename("pids.tmp", "pids")
    while True:
        signal.pause()
    """
)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def log_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def read_pids(path: Path) -> list[int]:
    wait_for(path.exists, what=f"{path.name} to be written")
    return [int(p) for p in path.read_text().split()]


@pytest.fixture
def executor() -> LocalExecutor:
    return LocalExecutor()


@pytest.fixture
def start(tmp_path: Path, executor: LocalExecutor) -> Iterator[Callable[..., LocalHandle]]:
    """Start a job in ``tmp_path/work`` logging to ``tmp_path/logs/job.log``; the process
    groups of all started jobs are killed at teardown."""
    handles: list[LocalHandle] = []
    workdir = tmp_path / "work"
    workdir.mkdir()

    def _start(
        *,
        entrypoint: str | None = None,
        argv: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LocalHandle:
        spec = LaunchSpec(
            job_id="job-1",
            attempt=1,
            entrypoint=entrypoint,
            argv=argv,
            workdir=workdir,
            log_path=tmp_path / "logs" / "job.log",
            env={"PATH": PATH} if env is None else env,
        )
        handle = executor.start(spec)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        handle.stop(0, force=True)


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-u", "-c", textwrap.dedent(code))


def test_shell_entrypoint_writes_log_and_exits_zero(
    start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "job.log"
    log.parent.mkdir()
    log.write_text("previous attempt\n")

    handle = start(entrypoint="echo hello from $0; pwd; echo oops >&2")

    assert handle.wait(10) == 0
    assert handle.log_path == log
    assert log.read_text().splitlines() == [
        "previous attempt",  # appended, not truncated
        "hello from /bin/sh",
        str(tmp_path / "work"),  # cwd is the workdir
        "oops",  # stderr goes to the same file
    ]


def test_handle_reports_pid_and_create_time(start: Callable[..., LocalHandle]) -> None:
    handle = start(argv=python("import signal; signal.pause()"))

    proc = psutil.Process(handle.pid)
    assert proc.create_time() == handle.create_time
    assert os.getpgid(handle.pid) == handle.pid  # leader of its own process group
    assert os.getsid(handle.pid) == handle.pid
    wait_for(lambda: proc.cmdline()[:1] == [sys.executable])  # exec may still be settling


def test_start_does_not_read_the_process_until_asked(
    start: Callable[..., LocalHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading ``/proc/<pid>/stat`` right after ``Popen`` waits for the child's exec (the
    claim loop would wait ≈ 2 ms per Python job): the start reads nothing of the
    process; its create time (psutil's) is read when asked, or before its exit is
    reaped, by one read of that file; psutil's view of it is made only when used."""
    real = psutil.Process
    made: list[int] = []
    read = procs.spy_reads(monkeypatch, made)
    running = start(argv=python("import signal; signal.pause()"))
    exited = start(argv=python("pass"))
    assert read == []

    assert running.create_time == real(running.pid).create_time()
    assert read == [running.pid]
    assert made == []  # one read of the file, no psutil view
    assert exited.wait(10) == 0  # reaped: /proc/<pid> is gone now
    assert read == [running.pid, exited.pid]
    assert exited.create_time > 0  # read before the reaping
    assert abs(exited.create_time - running.create_time) < 60
    assert read == [running.pid, exited.pid]  # once

    assert made == []
    assert running.sample().rss_bytes  # psutil's view, made now
    assert made[:1] == [running.pid]
    del made[:]
    exited.sample()  # reaped: no psutil view of it is made
    assert made == []


def test_argv_runs_without_a_shell(start: Callable[..., LocalHandle], tmp_path: Path) -> None:
    handle = start(
        argv=(*python("import sys; print(sys.argv[1:])"), "$HOME", "a b", "*"),
        env={"HOME": "/expanded-home"},
    )

    assert handle.wait(10) == 0
    assert log_text(handle.log_path) == "['$HOME', 'a b', '*']\n"


def test_non_zero_exit_code_is_returned(start: Callable[..., LocalHandle]) -> None:
    assert start(entrypoint="exit 3").wait(10) == 3
    assert start(argv=python("import sys; sys.exit(42)")).wait(10) == 42


def test_exit_fd_becomes_readable_when_the_process_exits(
    start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    handle = start(argv=(sys.executable, "-c", f"open({str(gate)!r}).read()"))
    fd = handle.exit_fd()
    assert fd is not None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        assert sel.select(0) == []  # still running: blocked on the fifo
        with gate.open("w"):
            pass  # lets it finish
        assert [key.fd for key, _ in sel.select(30)] == [fd]
    assert handle.wait(0) == 0
    handle.cleanup()
    assert handle.exit_fd() is None  # closed by the cleanup


def test_exit_by_signal_is_negative(start: Callable[..., LocalHandle]) -> None:
    assert start(entrypoint="kill -KILL $$").wait(10) == -9


def test_wait_returns_none_while_running(start: Callable[..., LocalHandle]) -> None:
    handle = start(argv=python("import signal; signal.pause()"))

    assert handle.wait(0.05) is None
    assert handle.stop(5) == -15


def test_env_is_exactly_the_spec_env(
    start: Callable[..., LocalHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBYARD_LEAK_CHECK", "leaked")
    env_program = shutil.which("env")
    assert env_program is not None

    handle = start(argv=(env_program,), env={"ONLY": "this", "AND": "that=1"})

    assert handle.wait(10) == 0
    assert sorted(log_text(handle.log_path).splitlines()) == ["AND=that=1", "ONLY=this"]


@pytest.mark.parametrize("program", ["/nonexistent/jobyard-prog", "jobyard-no-such-program"])
def test_missing_program_raises_executor_error(
    executor: LocalExecutor, tmp_path: Path, program: str
) -> None:
    log = tmp_path / "logs" / "job.log"
    spec = LaunchSpec(
        job_id="job-1",
        attempt=1,
        entrypoint=None,
        argv=(program, "arg"),
        workdir=tmp_path,
        log_path=log,
        env={"PATH": PATH},
    )

    with pytest.raises(ExecutorError) as raised:
        executor.start(spec)

    assert program in raised.value.message
    assert "No such file or directory" in raised.value.message
    assert raised.value.message in log.read_text()


def test_stop_kills_term_ignoring_child_and_its_grandchild(
    start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    handle = start(argv=python(IGNORE_TERM_WITH_GRANDCHILD))
    child, grandchild = read_pids(tmp_path / "work" / "pids")
    assert child == handle.pid
    assert not gone(grandchild)

    began = time.monotonic()
    code = handle.stop(grace_s=0.5)
    elapsed = time.monotonic() - began

    assert code == -9  # SIGTERM was ignored, SIGKILL did it
    assert 0.5 <= elapsed < 5
    assert gone(child)  # stop() returns only once the whole group is gone
    assert gone(grandchild)


def test_stop_waits_for_the_whole_group_not_just_the_main_process(
    start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    # The main process exits on SIGTERM; its grandchild ignores SIGTERM.
    handle = start(
        argv=python(
            """
            import os, signal, subprocess, sys
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            grandchild = subprocess.Popen(["sleep", "1000"])
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
            with open("pids.tmp", "w") as f:
                f.write(f"{os.getpid()} {grandchild.pid}")
            os.rename("pids.tmp", "pids")
            while True:
                signal.pause()
            """
        )
    )
    _, grandchild = read_pids(tmp_path / "work" / "pids")

    began = time.monotonic()
    assert handle.stop(grace_s=0.3) == 0
    assert time.monotonic() - began >= 0.3  # waited for the group, then SIGKILLed it
    assert gone(grandchild)


def test_stop_force_kills_at_once(start: Callable[..., LocalHandle], tmp_path: Path) -> None:
    handle = start(argv=python(IGNORE_TERM_WITH_GRANDCHILD))
    _, grandchild = read_pids(tmp_path / "work" / "pids")

    began = time.monotonic()
    assert handle.stop(grace_s=10, force=True) == -9
    assert time.monotonic() - began < 3  # did not wait for the grace period
    assert gone(grandchild)


def test_graceful_stop_lets_the_job_handle_sigterm(start: Callable[..., LocalHandle]) -> None:
    handle = start(
        argv=python(
            """
            import signal, sys
            def on_term(signum, frame):
                print("got SIGTERM, cleaning up")
                sys.exit(7)
            signal.signal(signal.SIGTERM, on_term)
            print("ready")
            while True:
                signal.pause()
            """
        )
    )
    wait_for(lambda: "ready" in log_text(handle.log_path), what="the job to be ready")

    began = time.monotonic()
    assert handle.stop(grace_s=10) == 7
    assert time.monotonic() - began < 3  # returned as soon as the group was gone
    assert "got SIGTERM, cleaning up\n" in log_text(handle.log_path)


def test_stop_after_exit_returns_the_exit_code(start: Callable[..., LocalHandle]) -> None:
    handle = start(entrypoint="exit 5")
    assert handle.wait(10) == 5

    assert handle.stop(1) == 5
    assert handle.stop(1, force=True) == 5


def test_cleanup_kills_background_process_left_behind(
    start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    handle = start(entrypoint="sleep 1000 & echo $! > bg.pid")
    assert handle.wait(10) == 0
    (background,) = read_pids(tmp_path / "work" / "bg.pid")
    assert not gone(background)
    assert os.getpgid(background) == handle.pid

    handle.cleanup()

    wait_for(lambda: gone(background), what="the background process to die")
    handle.cleanup()  # the group is gone now: no error


def test_sample_reports_memory(start: Callable[..., LocalHandle]) -> None:
    handle = start(
        argv=python(
            """
            import signal
            data = b"x" * (64 * 1024 * 1024)
            print("allocated")
            signal.pause()
            """
        )
    )
    wait_for(lambda: "allocated" in log_text(handle.log_path), what="the allocation")

    first = handle.sample()
    second = handle.sample()

    for usage in (first, second):
        assert usage.rss_bytes is not None and usage.rss_bytes >= 60 * 1024 * 1024
        assert usage.peak_rss_bytes is not None and usage.peak_rss_bytes >= usage.rss_bytes
    handle.stop(5)
    assert handle.sample() == second  # after the end: the last known values


def test_sample_counts_cpu_time_of_a_busy_child(start: Callable[..., LocalHandle]) -> None:
    # The busy loop runs in a grandchild of the shell: the tree is summed.
    # (the trailing ":" keeps the shell from exec-ing python in its place).
    busy = f"{shlex.quote(sys.executable)} -c 'while True: pass'; :"
    handle = start(argv=("/bin/sh", "-c", busy))
    baseline = handle.sample().cpu_time_s
    assert baseline is not None

    wait_for(lambda: (handle.sample().cpu_time_s or 0.0) >= baseline + 0.2, what="CPU time to grow")
    assert len(psutil.Process(handle.pid).children()) == 1  # python really is a child
    wait_for(lambda: (handle.sample().cpu_percent or 0.0) > 10, what="CPU percent to show")


def test_kill_orphan_kills_a_matching_process_group(
    executor: LocalExecutor, start: Callable[..., LocalHandle], tmp_path: Path
) -> None:
    handle = start(argv=python(IGNORE_TERM_WITH_GRANDCHILD))
    child, grandchild = read_pids(tmp_path / "work" / "pids")

    assert executor.kill_orphan(child, handle.create_time + 1.0) is False
    assert not gone(child) and not gone(grandchild)

    assert executor.kill_orphan(child, handle.create_time + 0.005) is True
    assert handle.wait(10) == -9
    wait_for(lambda: gone(grandchild), what="the grandchild to die")


def test_kill_orphan_of_a_missing_process_returns_false(executor: LocalExecutor) -> None:
    assert executor.kill_orphan(2**31 - 1, 0.0) is False


def test_the_boot_time_is_read_at_most_once_a_second(
    start: Callable[..., LocalHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create time is psutil's (the boot time from ``/proc/stat`` plus the process's
    start): the kernel builds all of ``/proc/stat`` for that line, so the boot time is
    read once and used for a second, then read again."""
    reads: list[float] = []
    real_boot_time = psutil.boot_time

    def counted() -> float:
        reads.append(real_boot_time())
        return reads[-1]

    monkeypatch.setattr(psutil, "boot_time", counted)
    monkeypatch.setattr(local, "_boot_time", (0.0, time.monotonic() - 5.0))  # stale
    handles = [start(argv=python("import signal; signal.pause()")) for _ in range(3)]
    for handle in handles:
        assert handle.create_time == psutil.Process(handle.pid).create_time()
    assert len(reads) == 1
    value, at = local._boot_time
    monkeypatch.setattr(local, "_boot_time", (value, at - local._BOOT_TIME_TTL_S))
    assert local.boot_time() == real_boot_time()
    assert len(reads) == 2
