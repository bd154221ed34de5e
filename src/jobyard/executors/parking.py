"""Parked sandboxes: the next job's sandbox started ahead while a slot is idle, in the
spare job directory, and let go on by the attempt that runs there (see
:class:`Parker`; the command is :meth:`Sandbox.parked_command`, the move of the job's
directory :class:`Mover`, the security argument in docs/explanation/security.md,
"Parked sandboxes")."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import re
import select
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from jobyard.errors import ExecutorError
from jobyard.executors.base import LaunchSpec, Parking
from jobyard.executors.cgroups import JobCgroup, spawn_in
from jobyard.executors.support import DEFAULT_USER

if TYPE_CHECKING:  # the sandbox builds the command (and imports this module)
    from jobyard.executors.sandbox import Sandbox

log = logging.getLogger("jobyard.executors")

_KILL_DEADLINE_S = 5.0
_PARK_DEADLINE_S = 10.0  #: how long a parked sandbox may take to mount the spare
_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox
_SHM = "/dev/shm"  # noqa: S108 - a fresh tmpfs inside the sandbox
_CLONE_FS = 0x200
_CLONE_NEWNS = 0x20000
_MS_MOVE = 0x2000
#: names a parked sandbox's shell can export; the shell's own ones it would not pass on
#: as given: a job whose environment has another name starts cold
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_OWN = frozenset(
    {"IFS", "LINENO", "PPID", "OPTIND", "OPTARG", "PS1", "PS2", "PS4", "ENV", "HISTSIZE"}
)


def stage_path(workdir: Path) -> str:
    """Where a parked sandbox keeps the job's directory until it goes: over its
    ``/dev/shm`` (over ``/tmp`` when the job's directory lies in ``/dev/shm``); the
    move uncovers the fresh tmpfs there."""
    return _TMP if workdir == Path(_SHM) or workdir.is_relative_to(_SHM) else _SHM


def go_message(spec: LaunchSpec, argv: list[str]) -> bytes | None:
    """What a parked sandbox's job process reads, once its directory is at the job's
    path, to run ``argv`` for ``spec``: a script it runs as the job's user: ``cd``, the
    job's environment exported (``PWD`` as bwrap sets it in a cold start, no ``OLDPWD``
    the job was not given), and ``exec`` of the command with ``/dev/null`` as its
    standard input. None when the shell could not give the job exactly that (a name it
    does not export as given, a newline in the path)."""
    work = str(spec.workdir)
    if "\n" in work or any(not _NAME.fullmatch(name) or name in _SHELL_OWN for name in spec.env):
        return None
    q = shlex.quote
    env = {name: value for name, value in spec.env.items() if name != "PWD"}
    lines = [
        f"cd {q(work)} || exit 1",
        *([] if "OLDPWD" in env else ["unset OLDPWD"]),
        "export " + " ".join(q(f"{name}={value}") for name, value in [*env.items(), ("PWD", work)]),
        f"exec {shlex.join(argv)} </dev/null",
        "",
    ]
    return "\n".join(lines).encode()


@dataclass(eq=False)
class Parked:
    """A sandbox parked in the spare job directory (see :meth:`Parker.park`)."""

    parking: Parking
    ident: tuple[int, int]  #: device and inode of the directory it holds
    input_ident: tuple[int, int]  #: and of its ``input/``
    log_fd: int  #: its output file (kept open to find it again after the spare's rename)
    go_fd: int = -1  #: the write end of its standard input
    popen: subprocess.Popen[bytes] | None = None
    root: psutil.Process | None = None
    group: JobCgroup | None = None
    started: Future[None] = field(default_factory=Future)
    #: the directory and its ``input/``, open while its processes may mount them
    dir_fds: list[int] = field(default_factory=list)
    #: its mount namespace and root directory (bwrap's PID 1's), until it goes
    ns_fds: list[int] = field(default_factory=list)
    setup_fds: list[int] = field(default_factory=list)  #: its status file, until it starts

    def close_setup_fds(self) -> None:
        fds, self.setup_fds = self.setup_fds, []
        for fd in fds:
            os.close(fd)

    def close_ns_fds(self) -> None:
        fds, self.ns_fds = self.ns_fds, []
        for fd in fds:
            os.close(fd)

    def close_dir_fds(self) -> None:
        """Once its processes are gone (a descriptor number reused meanwhile would be
        mounted in their place)."""
        fds, self.dir_fds = self.dir_fds, []
        for fd in fds:
            os.close(fd)

    def ready(self) -> bool:
        """Started, and still waiting for its job."""
        try:
            self.started.result()
        except Exception:  # it could not be started
            return False
        return self.popen is not None and self.popen.poll() is None


class Parker:
    """One parked sandbox at most, for a :class:`SandboxedExecutor`: started in its
    spawning thread (``spawner``), limited like a job (``limit``), used once; discarded
    (and the attempt started cold) when the attempt does not match it."""

    def __init__(
        self,
        sandbox: Sandbox,
        spawner: ThreadPoolExecutor,
        limit: Callable[[JobCgroup, LaunchSpec], None],
    ) -> None:
        self._sandbox = sandbox
        self._spawner = spawner
        self._limit = limit
        self._mover = Mover()
        self._park_lock = threading.Lock()
        self._parked: Parked | None = None
        self._closed = False

    def park(self, parking: Parking) -> None:
        """Park a sandbox in ``parking``'s directory unless one is parked there (one at
        most: one parked elsewhere, in a directory since taken by another attempt, is
        discarded). Started in the executor's spawning thread; returns at once."""
        if not self._sandbox.parks:
            return
        with self._park_lock:
            current = self._parked
            if self._closed or (current is not None and not current.started.done()):
                return
            try:
                ident = _ident(parking.workdir)
            except OSError:
                return
            if current is not None and current.ident == ident and current.ready():
                return
            self._parked = None
            if current is not None:
                self._spawner.submit(self.discard, current)
            if not parking.renames.acquire(blocking=False):
                return  # the spare is being taken
            try:
                parked = self._prepare_parked(parking)
            except OSError as e:
                parking.renames.release()
                log.info("no sandbox parked in %s: %s", parking.workdir, e)
                return
            self._parked = parked
        self._spawner.submit(self._run_parked, parked)

    def _prepare_parked(self, parking: Parking) -> Parked:
        """Its files, opened now: the spare may be renamed before its processes start."""
        fds: list[int] = []
        try:
            fds.append(os.open(parking.workdir, os.O_PATH | os.O_DIRECTORY))
            fds.append(os.open(parking.workdir / "input", os.O_PATH | os.O_DIRECTORY))
            parking.status_path.unlink(missing_ok=True)  # a new inode no process holds
            fds.append(os.open(parking.status_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
            fds.append(os.open(parking.log_path, flags, 0o600))
            fds.append(os.open(parking.status_path, os.O_RDONLY))  # bwrap's first words
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return Parked(
            parking=parking,
            ident=_fd_ident(fds[0]),
            input_ident=_fd_ident(fds[1]),
            log_fd=fds[3],
            dir_fds=fds[:2],
            setup_fds=[fds[2], fds[4]],
        )

    def _run_parked(self, parked: Parked) -> None:
        """Start the parked sandbox's processes (in the spawning thread) and wait until
        bwrap has mounted the spare (its job process says so); the spare may be renamed
        then."""
        try:
            self._popen_parked(parked)
        except Exception as e:
            log.info("no sandbox parked in %s: %s", parked.parking.workdir, e)
            parked.started.set_exception(e)
            self.discard(parked)
            return
        finally:
            parked.parking.renames.release()
        parked.started.set_result(None)

    def _popen_parked(self, parked: Parked) -> None:
        parking = parked.parking
        tree = self._sandbox.cgroups
        if tree is not None:
            parked.group = tree.acquire()
            parked.group.limit(memory_bytes=None, pids_max=self._sandbox.pids_max, cpu_slots=0)
        user = pwd.getpwnam(parking.user or DEFAULT_USER)
        work_fd, input_fd, status_fd, status_read = parked.dir_fds + parked.setup_fds
        read_end, parked.go_fd = os.pipe()
        signal_read, signal_write = os.pipe()  # the chain's standard output until it waits
        try:
            # the job's process reads its go message by path (/dev/stdin) as the job's
            # user; the pipe is reachable only through the descriptors of its holders
            os.fchown(read_end, user.pw_uid, -1)
            args = self._sandbox.parked_command(
                parking,
                status_fd=status_fd,
                work_fd=work_fd,
                input_fd=input_fd,
            )
            parked.popen = spawn_in(
                parked.group,
                args,
                lambda args: subprocess.Popen(  # noqa: S603 - our own fixed command
                    args,
                    cwd="/",
                    env={},
                    stdin=read_end,
                    stdout=signal_write,
                    stderr=parked.log_fd,
                    close_fds=True,
                    pass_fds=(status_fd,),
                    start_new_session=True,
                ),
            )
            parked.root = psutil.Process(parked.popen.pid)
            os.close(signal_write)
            signal_write = -1
            # the job's process's first word: bwrap has mounted everything, and the job's
            # process (the job's user, no capabilities) waits for its go message
            if _read_line(signal_read, _PARK_DEADLINE_S) != b"mounted":
                raise ExecutorError("the parked sandbox did not start")
            parked.ns_fds = _namespace_of(parked.popen.pid, os.pread(status_read, 4096, 0))
        finally:
            os.close(read_end)
            os.close(signal_read)
            if signal_write >= 0:
                os.close(signal_write)
            parked.close_setup_fds()

    def take(self, spec: LaunchSpec) -> Parked | None:
        """The parked sandbox if it holds ``spec``'s working directory (else it stays
        parked for the attempt that takes the spare)."""
        with self._park_lock:
            parked = self._parked
            if parked is None:
                return None
            try:
                if _ident(spec.workdir) != parked.ident:
                    return None
            except OSError:
                return None
            self._parked = None
        return parked

    def go(self, parked: Parked, spec: LaunchSpec, argv: list[str]) -> Parked | None:
        """Let the parked sandbox run ``argv`` for ``spec``: from then on its process, root,
        group and directory descriptors are the attempt's. None when it does not match
        the attempt (it is discarded: the attempt starts cold)."""
        message = go_message(spec, argv)
        status = spec.status_path or spec.log_path.with_suffix(".exit")
        logs = spec.log_path.parent
        matches = (
            message is not None
            and parked.ready()
            and spec.network
            and spec.user == parked.parking.user
            and _ident_or_none(spec.workdir / "input") == parked.input_ident
        )
        if not matches:
            self._spawner.submit(self.discard, parked)
            return None
        assert message is not None and parked.popen is not None and parked.root is not None
        try:  # the staged directory to the job's path, in the sandbox, meanwhile
            moved = self._mover.move(
                parked.ns_fds, stage_path(parked.parking.workdir), str(spec.workdir)
            )
        except OSError as e:
            log.info("job %s: its parked sandbox is not used: %s", spec.job_id, e)
            self._spawner.submit(self.discard, parked)
            return None
        try:  # its output and status files become the attempt's (never over a log begun)
            os.link(logs / parked.parking.log_path.name, spec.log_path)
            os.unlink(logs / parked.parking.log_path.name)
            os.replace(logs / parked.parking.status_path.name, status)
        except OSError as e:
            log.info("job %s: its parked sandbox is not used: %s", spec.job_id, e)
            _settle(moved)  # its namespace's descriptors are the mover's until then
            self._spawner.submit(self.discard, parked)
            return None
        group = parked.group
        if group is not None:
            try:
                self._limit(group, spec)
            except OSError as e:
                _settle(moved)
                self._spawner.submit(self.discard, parked)
                raise ExecutorError(f"cannot set the job's resource limits: {e}") from e
        try:
            moved.result()
        except OSError as e:  # start cold (after its output)
            log.info("job %s: its parked sandbox is not used: %s", spec.job_id, e)
            self._spawner.submit(self.discard, parked)
            return None
        parked.close_ns_fds()
        try:
            _write_all(parked.go_fd, message)
        except OSError as e:  # it ended meanwhile: start cold (after its output)
            log.info("job %s: its parked sandbox ended before it went: %s", spec.job_id, e)
            self._spawner.submit(self.discard, parked)
            return None
        os.close(parked.go_fd)
        parked.go_fd = -1
        os.close(parked.log_fd)
        parked.log_fd = -1
        return parked

    def discard(self, parked: Parked) -> None:
        """End a parked sandbox (its standard input closed, it exits; killed if it does
        not within the deadline), give its cgroups back, remove its files."""
        parked.close_setup_fds()
        parked.close_ns_fds()
        if parked.go_fd >= 0:
            os.close(parked.go_fd)
            parked.go_fd = -1
        popen = parked.popen
        if popen is not None:
            try:
                popen.wait(_KILL_DEADLINE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGKILL)
                if parked.group is not None:
                    parked.group.kill_all()
                popen.wait(_KILL_DEADLINE_S)
        if parked.group is not None and self._sandbox.cgroups is not None:
            parked.group.kill_all()  # what bwrap's end left exiting, so the group is reused
            self._sandbox.cgroups.release(parked.group)
            parked.group = None
        parked.close_dir_fds()
        if parked.log_fd >= 0:
            with contextlib.suppress(OSError):  # where the spare's rename took them
                logs = Path(os.readlink(f"/proc/self/fd/{parked.log_fd}")).parent
                for path in (parked.parking.log_path, parked.parking.status_path):
                    (logs / path.name).unlink(missing_ok=True)
            os.close(parked.log_fd)
            parked.log_fd = -1

    def close(self) -> None:
        """Park no more; end the parked sandbox and wait for the discards under way."""
        with self._park_lock:
            self._closed = True
            parked, self._parked = self._parked, None
        if parked is not None:
            with contextlib.suppress(Exception):
                parked.started.result()
            self.discard(parked)
        self._spawner.submit(lambda: None).result()  # the discards queued before
        self._mover.close()


class Mover:
    """Moves a parked sandbox's staged directory to the job's path, in the sandbox's
    mount namespace: from a thread of the server's own, which has unshared its
    filesystem attributes (root, working directory) from the rest of the server, enters
    the namespace, makes the path's missing directories (0755, as bwrap's ``--dir``),
    moves the mount, and returns to the server's namespace, root and working directory.
    ≈ 0.1 ms of the server's CPU instead of a ``mount --move`` run in the sandbox by a
    root helper (≈ 2.5 ms of CPU: a shell, a fork, ``mount``'s exec). If it cannot
    return, it moves nothing more (parked sandboxes are then discarded, jobs start cold).
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="jobyard-mount")
        self._home: list[int] = []  #: the thread's own namespace, root and working directory
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._broken = False

    def move(self, ns_fds: list[int], stage: str, target: str) -> Future[None]:
        """Move ``stage`` to ``target`` in the namespace of ``ns_fds`` (its ``mnt`` and
        root directory; they stay open until the move is over): the future fails with
        OSError when it could not."""
        if self._broken or len(ns_fds) != 2:
            raise OSError("the parked sandbox's namespace cannot be entered")
        try:
            return self._thread.submit(self._move, ns_fds[0], ns_fds[1], stage, target)
        except RuntimeError as e:  # closed
            raise OSError(str(e)) from e

    def _move(self, ns_fd: int, root_fd: int, stage: str, target: str) -> None:
        libc = self._libc
        if not self._home:
            if libc.unshare(_CLONE_FS) != 0:
                self._broken = True
                raise _errno("unshare")
            self._home = [
                os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC),
                os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
            ]
        if libc.setns(ns_fd, _CLONE_NEWNS) != 0:
            raise _errno("setns")
        try:
            os.fchdir(root_fd)
            os.chroot(".")
            _make_dirs(target)
            if libc.mount(stage.encode(), target.encode(), None, _MS_MOVE, None) != 0:
                raise _errno(f"mount --move {stage} {target}")
        finally:
            self._return(libc)

    def _return(self, libc: ctypes.CDLL) -> None:
        ns, root, cwd = self._home
        try:
            if libc.setns(ns, _CLONE_NEWNS) != 0:
                raise _errno("setns")
            os.fchdir(root)
            os.chroot(".")
            os.fchdir(cwd)
        except OSError:
            self._broken = True
            log.error("a thread could not leave a parked sandbox: no more are used")
            raise

    def close(self) -> None:
        self._thread.shutdown()
        home, self._home = self._home, []
        for fd in home:
            os.close(fd)


def _make_dirs(path: str) -> None:
    """``path``'s missing directories, 0755 (root's, in the sandbox's own tmpfs)."""
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chmod(directory, 0o755)  # noqa: S103 - as bwrap's --dir: the job's user enters


def _settle(future: Future[None]) -> None:
    with contextlib.suppress(Exception):
        future.result()


def _errno(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def _namespace_of(pid: int, status: bytes) -> list[int]:
    """The root directory and mount namespace, opened, of the sandbox whose outer bwrap
    is ``pid`` (of its PID 1): by the PID and namespace bwrap wrote first to its status
    file (``status``), else by ``pid``'s only child."""
    first = status.split(b"\n", 1)[0]
    child = re.search(rb'"child-pid": *([0-9]+)', first)
    namespace = re.search(rb'"mnt-namespace": *([0-9]+)', first)
    if child is not None:
        pid1 = child[1].decode()
    else:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) != 1:
            raise ExecutorError(f"the parked sandbox's bwrap has {len(children)} children")
        pid1 = children[0]
    fds = [os.open(f"/proc/{pid1}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        fds.insert(0, os.open(f"/proc/{pid1}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))
        # that process's: a PID reused meanwhile would be in another namespace (PID 1
        # lived from before the root was opened until the namespace was, if it is its)
        if namespace is not None:
            same = os.fstat(fds[0]).st_ino == int(namespace[1])
        else:
            same = Path(f"/proc/{pid}/task/{pid}/children").read_text().split() == [pid1]
        if not same:
            raise ExecutorError("the parked sandbox's PID 1 ended")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _ident_or_none(path: Path) -> tuple[int, int] | None:
    try:
        return _ident(path)
    except OSError:
        return None


def _fd_ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _read_line(fd: int, timeout: float) -> bytes:
    """One line from ``fd`` (without its newline; what came by ``timeout`` or the end)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.rstrip(b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
