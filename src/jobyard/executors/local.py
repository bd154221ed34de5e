"""The local executor: one subprocess per attempt, in its own process group.

The job's main process leads a new session (``start_new_session=True``), so the whole
tree it starts can be signalled with :func:`os.killpg` and found again after a server
restart by ``pid`` + psutil ``create_time``. Output goes to the attempt's log file.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import BinaryIO

import psutil

from jobyard.domain.jobs import ResourceUsage
from jobyard.errors import ExecutorError
from jobyard.executors.base import LaunchSpec

_POLL_S = 0.02  #: polling slice while waiting for a process group to go away
_KILL_DEADLINE_S = 5.0  #: how long SIGKILL may take before we give up
_CREATE_TIME_TOLERANCE_S = 0.01


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: how long a boot time read from ``/proc/stat`` is used before it is read again
_BOOT_TIME_TTL_S = 1.0
#: (the boot time, the monotonic time it was read at)
_boot_time: tuple[float, float] = (0.0, -_BOOT_TIME_TTL_S)


def boot_time() -> float:
    """``psutil.boot_time()`` (the ``btime`` line of ``/proc/stat``, whole seconds),
    read at most once a second: the kernel builds all of ``/proc/stat`` (every CPU's
    and every interrupt's counters) for that one line, ≈ 20 µs of CPU alone and
    ≈ 150 µs inside the server, at every start and exit. It changes only when the
    wall clock is set, as psutil's own figure does."""
    global _boot_time
    value, at = _boot_time
    now = time.monotonic()
    if now - at >= _BOOT_TIME_TTL_S:
        value = psutil.boot_time()
        _boot_time = (value, now)
    return value


def create_time_of(pid: int) -> float:
    """``psutil.Process(pid).create_time()``, the same float (psutil's sum of the start
    time in ``/proc/<pid>/stat`` and the boot time), from one read of that file and
    :func:`boot_time`: ≈ 10 µs of CPU against ≈ 60 for a ``psutil.Process`` and its
    create time."""
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    ticks = data[data.rindex(b")") + 2 :].split()[19]
    return float(ticks) / _CLOCK_TICKS + boot_time()


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) also succeeds for zombies waiting to be reaped by their parent (or init).
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def _pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid`` (not yet reaped, so it is still our child), or None where the
    kernel or Python lacks pidfds."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    try:
        return pwd.getpwnam(user).pw_gid
    except KeyError:
        raise ExecutorError(f"jobyard: the run-as user {user!r} does not exist") from None


class LocalHandle:
    """A job attempt running as a local subprocess (leader of its process group).

    Its process as psutil sees it (``root``, with its create time) is read on first use
    when not given: right after ``Popen`` a read of ``/proc/<pid>/stat`` waits for the
    kernel to finish the child's ``exec`` (its ``exec_update_lock``), ≈ 2 ms for a Python
    job, which the claim loop would wait for at each start. It is read before the
    process is reaped (then it is a zombie, whose ``/proc`` entry is still there)."""

    def __init__(
        self, popen: subprocess.Popen[bytes], log_path: Path, root: psutil.Process | None = None
    ):
        self._popen = popen
        self._proc = root
        self._create_time: float | None = None if root is None else root.create_time()
        self._proc_lock = threading.Lock()
        self.log_path = log_path
        self._lock = threading.Lock()
        self._group_gone = False  # once True, the pgid may be reused: never signal it again
        self._pidfd: int | None = _pidfd_open(popen.pid)
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_seen: dict[int, float] = {}  # last CPU time seen per tracked pid
        self._cpu_exited = 0.0  # CPU time of tracked processes that have vanished
        self._last = ResourceUsage(
            cpu_percent=0.0,
            rss_bytes=0,
            peak_rss_bytes=0,
            cpu_time_s=0.0,
            io_read_ops=0,
            io_write_ops=0,
        )

    @property
    def pid(self) -> int:
        """Process id of the main process (and id of its process group)."""
        return self._popen.pid

    @property
    def create_time(self) -> float:
        """psutil create time of the main process (0.0 if it could not be read before
        the process was reaped: never for a process this handle reaps itself)."""
        if self._create_time is None:
            self._identify()
        assert self._create_time is not None
        return self._create_time

    @property
    def _root(self) -> psutil.Process:
        """The main process as psutil sees it (psutil.NoSuchProcess if it could not be
        read before it was reaped): made on first use, while the process is not reaped
        (its pid cannot name another process then) and has the create time read."""
        if self._proc is None:
            self._identify()
            with self._proc_lock:
                if self._proc is None:
                    self._proc = self._psutil_process()
        return self._proc

    def _psutil_process(self) -> psutil.Process:
        if self._create_time == 0.0 or self._popen.returncode is not None:
            raise psutil.NoSuchProcess(self.pid)
        proc = psutil.Process(self._popen.pid)
        if abs(proc.create_time() - (self._create_time or 0.0)) > _CREATE_TIME_TOLERANCE_S:
            raise psutil.NoSuchProcess(self.pid)  # reaped meanwhile, its pid reused
        return proc

    def _identify(self) -> None:
        """Read the main process's create time once; before it is reaped (callers that
        reap call this first)."""
        if self._create_time is not None:
            return
        with self._proc_lock:
            if self._create_time is not None:
                return
            try:
                self._create_time = create_time_of(self._popen.pid)
            except (OSError, ValueError, IndexError):
                self._create_time = 0.0

    @property
    def kernel_limits(self) -> bool:
        """No kernel limits: the memory limit is enforced by sampling."""
        return False

    def oom_killed(self) -> bool:
        return False

    def pids_exhausted(self) -> int | None:
        return None

    def exit_fd(self) -> int | None:
        """A pidfd of the main process (readable once it exited), until :meth:`cleanup`."""
        return self._pidfd

    def wait(self, timeout: float | None) -> int | None:
        """The exit code once the main process exited, ``None`` if still running."""
        self._identify()  # before the reaping below: then /proc/<pid> is gone
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float, *, force: bool = False) -> int:
        """SIGTERM the group, give it ``grace_s`` seconds, then SIGKILL what is left."""
        if not force and not self._finished():
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a stopped process must run to handle SIGTERM
            self._wait_finished(grace_s)
        if not self._finished():
            self._signal(signal.SIGKILL)
            if not self._wait_finished(_KILL_DEADLINE_S):
                raise ExecutorError(
                    f"process group {self.pid} survived SIGKILL for {_KILL_DEADLINE_S} s",
                    pid=self.pid,
                )
        code = self._popen.returncode
        assert code is not None  # _finished() reaped the main process
        return code

    def cleanup(self) -> None:
        """SIGKILL whatever is left in the process group (e.g. background processes)."""
        with contextlib.suppress(ExecutorError):  # the pgid is no longer ours
            self._signal(signal.SIGKILL)
        self._wait_finished(_KILL_DEADLINE_S)
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            os.close(fd)

    def _processes(self) -> list[psutil.Process]:
        """The main process and its descendants now (psutil.Error once it is gone)."""
        return [self._root, *self._root.children(recursive=True)]

    def sample(self) -> ResourceUsage:
        """Resource use of the main process and its descendants (never raises)."""
        self._identify()
        with self._lock:
            if self._popen.poll() is not None:
                return self._last
            try:
                tree = self._processes()
            except psutil.Error:
                return self._last
            cpu_percent, rss, cpu_live = 0.0, 0, 0.0
            reads = writes = 0
            alive: dict[int, psutil.Process] = {}
            for fresh in tree:
                proc = self._procs.get(fresh.pid)
                if proc is None or proc != fresh:  # new process, or pid reused
                    self._forget(fresh.pid)
                    proc = fresh
                try:
                    with proc.oneshot():
                        pct = proc.cpu_percent(None)
                        mem = proc.memory_info().rss
                        times = proc.cpu_times()
                        io = proc.io_counters() if hasattr(proc, "io_counters") else None
                except psutil.Error:
                    continue
                if io is not None:
                    reads += io.read_count
                    writes += io.write_count
                alive[proc.pid] = proc
                cpu_percent += pct
                rss += mem
                self._cpu_seen[proc.pid] = times.user + times.system
                cpu_live += self._cpu_seen[proc.pid]
            for pid in set(self._procs) - set(alive):
                self._forget(pid)
            self._procs = alive
            last = self._last
            self._last = ResourceUsage(
                cpu_percent=cpu_percent,
                rss_bytes=rss,
                peak_rss_bytes=max(last.peak_rss_bytes or 0, rss),
                cpu_time_s=max(last.cpu_time_s or 0.0, self._cpu_exited + cpu_live),
                io_read_ops=max(last.io_read_ops or 0, reads),
                io_write_ops=max(last.io_write_ops or 0, writes),
            )
            return self._last

    def _forget(self, pid: int) -> None:
        """Stop tracking ``pid``, keeping the CPU time it used."""
        self._cpu_exited += self._cpu_seen.pop(pid, 0.0)
        self._procs.pop(pid, None)

    def _signal(self, sig: signal.Signals) -> None:
        if self._group_gone:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except OSError as exc:
            raise ExecutorError(f"cannot signal process group {self.pid}: {exc}") from exc

    def _finished(self) -> bool:
        """True once the main process is reaped and its group has no live member."""
        if self._group_gone:
            return True
        self._identify()
        if self._popen.poll() is None or _group_alive(self.pid):
            return False
        self._group_gone = True
        return True

    def _wait_finished(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._finished():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True


class LocalExecutor:
    """Runs each attempt as a local subprocess in its own session / process group."""

    def start(self, spec: LaunchSpec) -> LocalHandle:
        """Start the attempt; :class:`ExecutorError` (also written to the log) on failure."""
        if spec.argv:
            args = list(spec.argv)
        elif spec.entrypoint is not None:
            args = ["/bin/sh", "-c", spec.entrypoint]
        else:
            raise ExecutorError("the launch spec has neither argv nor entrypoint")
        with open_log(spec) as log:
            try:
                popen = subprocess.Popen(  # noqa: S603 - argv comes from the job spec
                    args,
                    cwd=spec.workdir,
                    env=dict(spec.env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    start_new_session=True,
                    user=spec.user,
                    group=_primary_group(spec.user),
                    extra_groups=[] if spec.user is not None else None,
                )
            except (OSError, ValueError) as exc:
                message = f"jobyard: cannot start {args[0]!r}: {exc}"
                log.write(message.encode("utf-8", "replace") + b"\n")
                raise ExecutorError(message, program=args[0]) from exc
        return LocalHandle(popen, spec.log_path)  # its psutil identity read on first use

    def kill_orphan(self, pid: int, create_time: float) -> bool:
        """SIGKILL the group led by ``pid`` if that process has ``create_time``."""
        return kill_group_of(pid, create_time)

    def sweep(self) -> int:
        """Nothing to sweep: without a sandbox, leftovers are found by pid (kill_orphan)."""
        return 0

    def close(self) -> None:
        """Nothing to release."""


def open_log(spec: LaunchSpec) -> BinaryIO:
    """The attempt's log, opened for appending (readable by the server only); its
    directory made first if it is not there (the preparer made it: one ``mkdir`` and
    ``stat`` fewer a start)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        try:
            fd = os.open(spec.log_path, flags, 0o600)
        except FileNotFoundError:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(spec.log_path, flags, 0o600)
        return os.fdopen(fd, "ab")
    except OSError as exc:
        raise ExecutorError(f"cannot open log {spec.log_path}: {exc}") from exc


def kill_group_of(pid: int, create_time: float) -> bool:
    """SIGKILL the process group led by ``pid`` if that process has ``create_time``;
    True if the process was still running (an exited one, a zombie not reaped yet, had
    ended by itself: what is left of its group is killed all the same)."""
    try:
        proc = psutil.Process(pid)
        actual = proc.create_time()
        running = proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    if abs(actual - create_time) > _CREATE_TIME_TOLERANCE_S:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise ExecutorError(f"cannot kill process group {pid}: {exc}") from exc
    return running
