"""Jobs in a sandbox: each attempt runs under bubblewrap in its own namespaces, as an
unprivileged user, in its own cgroups.

What a job sees: its working directory (read-write, its ``input/`` read-only), the
system's programs and libraries (``/usr``, ``/etc``, the server's Python and jobyard's
own code, all read-only), a private ``/tmp`` and ``/dev``, and its own processes only
(``/proc`` of a new PID namespace). Not the data directory, other jobs, the
credentials, the database, the server's environment or its processes. ``network:
none`` gives it a network namespace with only a loopback interface.

The process chain is ``bwrap`` (the outer monitor, a child of the server, in the
attempt's cgroups from its fork on: the server's thread that forks it joins them
meanwhile, see :meth:`JobCgroup.spawn`; ``--die-with-parent`` kills the sandbox when
the server dies, so a dead node leaves nothing running) → bwrap's PID 1 → the job,
started through ``setpriv`` as the unprivileged user with no capabilities.
bwrap records the exit status in the attempt's status file (``--json-status-fd``), so
a node restarted after its job finished still knows the outcome.

A *parked* sandbox is the same chain started ahead, while a slot is idle, in the spare
job directory (see :class:`SandboxedExecutor`): its ``setpriv`` has run, and its job
process waits, as the job's user, for the job's directory to be moved to the job's
path (by a thread of the server's own, in the sandbox's mount namespace) and for the
job's command. The next attempt that runs
in that directory only lets it go on; any other attempt discards it and starts cold.
docs/explanation/security.md gives the argument why a job started so sees and may do
exactly what a job started cold sees and may do.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psutil

from jobyard.domain.jobs import ResourceUsage
from jobyard.errors import ExecutorError
from jobyard.executors.base import LaunchSpec, Parking, thread_outlives_its_processes
from jobyard.executors.cgroups import CgroupTree, JobCgroup, spawn_in
from jobyard.executors.local import LocalHandle, kill_group_of, open_log
from jobyard.executors.parking import Parker, stage_path
from jobyard.executors.support import DEFAULT_USER, SandboxSupport

log = logging.getLogger("jobyard.executors")

_SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
_KILL_DEADLINE_S = 5.0
_TMP = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox
_SHM = "/dev/shm"  # noqa: S108 - a fresh tmpfs inside the sandbox
_PROBE_TIMEOUT_S = 10.0


class Sandbox:
    """How to wrap one attempt: the programs, the read-only paths, the limits. The mounts
    that are the same for every job are worked out once."""

    def __init__(
        self,
        *,
        bwrap: str,
        setpriv: str,
        read_only: tuple[Path, ...],
        cgroups: CgroupTree | None,
        pids_max: int | None,
    ) -> None:
        self.bwrap = bwrap
        self.setpriv = setpriv
        #: whether this host parks sandboxes (its probe ran one)
        self.parks = False
        self.cgroups = cgroups
        self.pids_max = pids_max
        static: list[str] = []
        #: whether jobs see the host's /etc (where setpriv looks their user up by name)
        self.host_etc = False
        for name in _SYSTEM_DIRS:
            path = Path(name)
            if path.is_symlink():
                static += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                static += ["--ro-bind", name, name]
                self.host_etc = self.host_etc or name == "/etc"
        static += ["--proc", "/proc", "--dev", "/dev"]
        static += ["--perms", "1777", "--tmpfs", _TMP, "--perms", "1777", "--tmpfs", _SHM]
        made: set[Path] = {Path("/"), Path(_TMP), Path("/dev"), Path("/proc")}
        mounted = [Path(p) for p in _SYSTEM_DIRS]
        for path in read_only:
            if path.exists() and not _under(path, mounted):
                static += [*_parents(path, made), "--ro-bind", str(path), str(path)]
                mounted.append(path)
        self.read_only = tuple(mounted[len(_SYSTEM_DIRS) :])  #: besides the system dirs
        self._static = tuple(static)
        self._made = frozenset(made)
        #: ``_parents`` of a job directory's parent (the node's ``jobs/``), by that
        #: parent: the same for every job (≈ 40 µs of pathlib a start otherwise)
        self._above: dict[Path, tuple[tuple[str, ...], frozenset[Path]]] = {}
        #: what a job sees, as path prefixes (for the check that its program is there)
        self.visible = tuple(f"{p}/" for p in mounted)

    def command(self, spec: LaunchSpec, argv: list[str], *, status_fd: int) -> list[str]:
        """The full argument vector that runs ``argv`` for ``spec`` in the sandbox (started
        in the attempt's cgroups by :func:`spawn_in`)."""
        uid, gid = setpriv_ids(spec.user or DEFAULT_USER, by_name=self.host_etc)
        work = str(spec.workdir)
        args = [
            *self._namespaces(network=spec.network, status_fd=status_fd),
            *self._static,
            *self._dirs_above(spec.workdir),
            "--bind",
            work,
            work,
        ]
        if os.path.isdir(f"{work}/input"):
            args += ["--ro-bind", f"{work}/input", f"{work}/input"]
        args += ["--chdir", work, "--", *self._setpriv(uid, gid), *_loader_env(spec, argv)]
        return args

    def _dirs_above(self, work: Path) -> list[str]:
        """``_parents(work, …)``: the ``--dir`` arguments of ``work``'s ancestors, those
        above its parent worked out once per parent of its parent."""
        parent = work.parent
        above = self._above.get(parent.parent)
        if above is None:
            if len(self._above) >= 64:  # work directories all over (tests): no memo
                self._above.clear()
            made = set(self._made)
            args = tuple(_parents(parent, made))
            above = self._above[parent.parent] = (args, frozenset(made))
        if parent in above[1]:
            return list(above[0])
        return [*above[0], "--perms", "0755", "--dir", str(parent)]

    def _namespaces(self, *, network: bool, status_fd: int) -> list[str]:
        return [
            self.bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *(["--unshare-net"] if not network else []),
            "--json-status-fd",
            str(status_fd),
        ]

    def parked_command(
        self,
        parking: Parking,
        *,
        status_fd: int,
        work_fd: int,
        input_fd: int,
    ) -> list[str]:
        """The argument vector of a sandbox parked for the next attempt in ``parking``'s
        directory, bound where the job's ``/tmp`` or ``/dev/shm`` will be, over it
        (:func:`parking.stage_path`). Its job process, the job's user already, says
        ``mounted`` on its standard output (then points it at its standard error, the
        output file) and runs its go message, read from its standard input (see
        :func:`parking.go_message`) once the server has moved the staged directory to
        the job's path (:class:`parking.Mover`).

        The directory and its ``input/`` are given as this process's descriptors
        ``work_fd`` and ``input_fd``, by their ``/proc`` links, which bwrap's mount follows
        to the directories themselves: the spare may be renamed to the job's name before
        bwrap mounts it (``--bind-fd`` would resolve to the old path at once, and bind
        whatever is there by then). They must stay open until the sandbox has ended."""
        assert self.parks
        uid, gid = setpriv_ids(parking.user or DEFAULT_USER, by_name=self.host_etc)
        stage = stage_path(parking.workdir)
        jobs = parking.workdir.parent.parent  # where the job's directory will be
        job = "echo mounted && exec >&2 && . /dev/stdin; exit 1"
        args = [
            *self._namespaces(network=True, status_fd=status_fd),
            *self._static,
            *_parents(jobs / "job", set(self._made)),
            "--bind",
            f"/proc/{os.getpid()}/fd/{work_fd}",
            stage,
            "--ro-bind",
            f"/proc/{os.getpid()}/fd/{input_fd}",
            f"{stage}/input",
            "--chdir",
            "/",
            "--",
            *self._setpriv(uid, gid),
            "/bin/sh",
            "-c",
            job,
        ]
        return args

    def _setpriv(self, uid: str, gid: str) -> list[str]:
        return [
            self.setpriv,
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]


#: variables that change how glibc's dynamic loader and libc behave, which glibc drops
#: itself only for set-user-ID programs: a job's value must not reach the chain's
#: processes that run as root (``bwrap``, ``setpriv``, and ``sh`` on the host where a
#: shell joins the cgroups, see :meth:`JobCgroup.spawn`)
_LOADER_NAMES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


def _for_loader(name: str) -> bool:
    return name.startswith(("LD_", "MALLOC_")) or name in _LOADER_NAMES


def chain_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a cold start's chain for a job's ``env``: the job's, without
    the loader's variables (:func:`_loader_env` gives those to the job after
    ``setpriv``)."""
    return {name: value for name, value in env.items() if not _for_loader(name)}


def _loader_env(spec: LaunchSpec, argv: list[str]) -> list[str]:
    """``argv`` behind ``env NAME=VALUE …`` for the job's loader variables, run as the
    job's user after ``setpriv`` (``argv`` alone when it has none, the usual case)."""
    pairs = [f"{name}={value}" for name, value in spec.env.items() if _for_loader(name)]
    if not pairs:
        return argv
    shell = ["/bin/sh", "-c", 'exec "$@"', "sh"] if "=" in argv[0] else []  # not a NAME=VALUE
    return ["/usr/bin/env", "--", *pairs, *shell, *argv]


@functools.lru_cache(maxsize=16)
def setpriv_ids(user: str, *, by_name: bool, etc: Path = Path("/etc")) -> tuple[str, str]:
    """``setpriv``'s ``--reuid`` and ``--regid`` for ``user`` (KeyError if there is none):
    with ``by_name`` (jobs see the host's ``/etc``, read-only), the names of the user and
    its primary group when ``etc`` gives them the ids the server looked up, else the ids.
    setpriv looks its argument up as a name first: a number misses ``/etc/passwd`` and
    goes on to the next NSS module (``libnss_systemd`` here, loaded with ``libcap`` and
    ``libm``: ≈ 0.3–0.5 ms of each sandboxed start), a name is found in the files."""
    entry = pwd.getpwnam(user)
    uid, gid = entry.pw_uid, entry.pw_gid
    if not by_name:
        return str(uid), str(gid)
    try:
        group = grp.getgrgid(gid).gr_name
        names = _files_first(etc / "nsswitch.conf") and (
            _files_entry(etc / "passwd", user)[2:4] == [str(uid), str(gid)]
            and _files_entry(etc / "group", group)[2:3] == [str(gid)]
        )
    except (KeyError, OSError, UnicodeDecodeError):
        names = False
    return (user, group) if names else (str(uid), str(gid))


def _files_first(nsswitch: Path) -> bool:
    """Whether glibc asks ``/etc/passwd`` and ``/etc/group`` before any other source."""
    sources: dict[str, list[str]] = {}
    for line in nsswitch.read_text().splitlines():
        database, _, rest = line.split("#", 1)[0].partition(":")
        sources[database.strip()] = rest.split()
    return all(sources.get(db, ["files"])[:1] == ["files"] for db in ("passwd", "group"))


def _files_entry(path: Path, name: str) -> list[str]:
    """The fields of the first line for ``name`` in ``path`` (``passwd`` or ``group``
    format; the line glibc's files module returns), or []."""
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return []


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _parents(path: Path, made: set[Path]) -> list[str]:
    """``--dir`` arguments (mode 0755) for the ancestors of ``path`` not made yet; bwrap
    would otherwise make them 0700, which the unprivileged job user cannot enter."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def python_paths() -> list[Path]:
    """The server's interpreter, its virtualenv and jobyard's own code: notebook and
    Python jobs run with them (read-only)."""
    import jobyard

    paths = {
        Path(sys.base_prefix).resolve(),
        Path(sys.prefix).resolve(),
        Path(sys.executable).resolve().parent.parent,
        Path(jobyard.__file__).resolve().parent.parent,
    }
    return sorted(paths)


def detect(
    *,
    node_id: str,
    data_dir: Path,
    read_only_inside: Iterable[Path] = (),
    extra_read_only: Iterable[Path] = (),
    pids_max: int | None,
) -> tuple[Sandbox | None, SandboxSupport]:
    """The sandbox this host allows (None when it cannot sandbox), and what it allows.
    ``read_only_inside``: directories of the data directory jobs need (the Python
    environments, the in-job helper); no other path that holds the data directory or
    lies in it is shown to jobs."""
    cgroups: CgroupTree | None = None
    limits_reason = ""
    reason = unavailable()
    if reason:
        return None, SandboxSupport(False, reason, False, "jobs are not sandboxed")
    cgroups, limits_reason = CgroupTree.detect(node_id, data_dir)
    data = data_dir.resolve()
    for inside in read_only_inside:  # made now, so that every later job sees them
        inside.mkdir(parents=True, exist_ok=True)
    outside = [
        p
        for p in (*python_paths(), *extra_read_only)
        if not _under(data, [p]) and not _under(p, [data])
    ]
    sandbox = Sandbox(
        bwrap=shutil.which("bwrap") or "bwrap",
        setpriv=shutil.which("setpriv") or "setpriv",
        read_only=(*outside, *read_only_inside),
        cgroups=cgroups,
        pids_max=pids_max,
    )
    probe = _probe(sandbox)
    if probe:
        return None, SandboxSupport(False, probe, False, "jobs are not sandboxed")
    sandbox.parks = True
    why = _probe_parked(sandbox)
    if why:
        log.info("no sandboxes are parked ahead on this host: %s", why)
        sandbox.parks = False
    return sandbox, SandboxSupport(True, "", cgroups is not None, limits_reason)


def unavailable() -> str:
    """Why this host cannot sandbox jobs: '' when it can (Linux, root, bubblewrap and
    setpriv installed; whether the kernel lets bubblewrap run is :func:`detect`'s probe)."""
    if not sys.platform.startswith("linux"):
        return "job sandboxes need Linux namespaces"
    if os.geteuid() != 0:
        return "the server does not run as root (needed to run jobs as another user)"
    for program, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian package {package!r})"
    return ""


def isolate(
    args: list[str], workdir: Path, env: dict[str, str], *, network: bool, status_fd: int
) -> list[str]:
    """``args`` as a sandboxed job in ``workdir``, a directory that is not one of this
    node's job directories (the private copy of a job on a Ray worker, see
    :mod:`raywrap`): run as ``nobody``, seeing only ``workdir`` (read-write), the
    system's paths, this Python and jobyard's code, and the ``PYTHONPATH`` entries of
    ``env`` (read-only). No cgroups: the limits are the cluster's. ``workdir`` (and what
    is in it) is given to ``nobody``; ``env`` gets the job's ``HOME``/``USER``. Call only
    where :func:`unavailable` says ''. bubblewrap writes its status to ``status_fd``."""
    extra = [Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    box = Sandbox(
        bwrap=shutil.which("bwrap") or "bwrap",
        setpriv=shutil.which("setpriv") or "setpriv",
        read_only=tuple(sorted({*python_paths(), *extra})),
        cgroups=None,
        pids_max=None,
    )
    user = pwd.getpwnam(DEFAULT_USER)
    for dirpath, _, filenames in os.walk(workdir):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)
    workdir.parent.chmod(0o755)
    spec = LaunchSpec(
        job_id="isolated",
        attempt=1,
        entrypoint=None,
        argv=tuple(args),
        workdir=workdir,
        log_path=workdir / ".log",
        env=env,
        network=network,
    )
    env["HOME"] = str(workdir)
    env["USER"] = env["LOGNAME"] = DEFAULT_USER
    job = ["env", "--default-signal=TERM", "--", *args]  # bwrap ignores TERM, the job not
    return box.command(spec, job, status_fd=status_fd)


def _probe(sandbox: Sandbox) -> str:
    """Run ``true`` in a sandbox like a job's; '' if it works, else what failed."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jobyard-probe-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        os.chmod(tmp, 0o755)  # noqa: S103 - the probe user must reach its directory
        user = pwd.getpwnam(DEFAULT_USER)
        os.chown(work, user.pw_uid, user.pw_gid)
        spec = LaunchSpec(
            job_id="probe",
            attempt=1,
            entrypoint=None,
            argv=("true",),
            workdir=work,
            log_path=Path(tmp) / "log",
            env={"PATH": "/usr/bin:/bin"},
            network=False,
        )
        r, w = os.pipe()
        try:
            args = sandbox.command(spec, ["true"], status_fd=w)
            done = subprocess.run(  # noqa: S603 - our own fixed command
                args,
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                pass_fds=(w,),
                check=False,
            )
        except (OSError, subprocess.SubprocessError, KeyError) as e:
            return f"bubblewrap cannot start a sandbox here: {e}"
        finally:
            os.close(r)
            os.close(w)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()
            return "bubblewrap cannot start a sandbox here: " + (
                error[-1] if error else f"exit code {done.returncode}"
            )
    return ""


def _probe_parked(sandbox: Sandbox) -> str:
    """Park a sandbox and run ``true`` in it as a job; '' if it works, else what failed."""
    import copy
    import tempfile

    bare = copy.copy(sandbox)
    bare.cgroups = None  # the node's groups stay untouched until it starts
    executor = SandboxedExecutor(bare)
    with tempfile.TemporaryDirectory(prefix="jobyard-probe-") as tmp:
        os.chmod(tmp, 0o755)  # noqa: S103 - the probe user must reach its directory
        jobs = Path(tmp) / "jobs"
        spare = jobs / "spare"
        (spare / "work" / "input").mkdir(parents=True)
        (spare / "logs").mkdir()
        user = pwd.getpwnam(DEFAULT_USER)
        os.chown(spare / "work", user.pw_uid, user.pw_gid)
        renames = threading.Lock()
        executor.park(
            Parking(
                workdir=spare / "work",
                log_path=spare / "logs" / ".parked.log",
                status_path=spare / "logs" / ".parked.exit",
                user=None,
                renames=renames,
            )
        )
        with renames:
            os.rename(spare, jobs / "probe")
        spec = LaunchSpec(
            job_id="probe",
            attempt=1,
            entrypoint=None,
            argv=("true",),
            workdir=jobs / "probe" / "work",
            log_path=jobs / "probe" / "logs" / "log",
            env={"PATH": "/usr/bin:/bin"},
        )
        try:
            handle = executor.start(spec)
            code = handle.wait(_PROBE_TIMEOUT_S)
            handle.cleanup()
            output = spec.log_path.read_text(errors="replace").strip()
        except (OSError, ExecutorError) as e:
            return f"a parked sandbox could not run a job: {e}"
        finally:
            executor.close_parking()
            executor._spawner.shutdown()
        if not handle.parked:
            return "the job did not start in the parked sandbox"
        if code != 0:
            last = output.splitlines()[-1] if output else f"exit code {code}"
            return f"a parked sandbox could not run a job: {last}"
    return ""


class SandboxHandle(LocalHandle):
    """An attempt running in a sandbox. Its processes are those of its PID namespace:
    when the job's main process exits, bwrap's PID 1 exits and the kernel kills the
    rest, so nothing the job left behind (``setsid``, ``nohup``) survives it.

    Its outer bwrap as psutil sees it (``root``) is read on first use when not given,
    as :class:`LocalHandle`'s process is: right after ``Popen`` the read waits for the
    child's ``exec`` to finish, on the claim loop's thread."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        log_path: Path,
        root: psutil.Process | None,
        group: JobCgroup | None,
        tree: CgroupTree | None,
        *,
        parked: bool = False,
    ) -> None:
        super().__init__(popen, log_path, root)
        self.group = group
        self._tree = tree
        self.parked = parked  #: started in a parked sandbox
        #: descriptors its sandbox's mounts refer to, closed once its processes are gone
        self.held_fds: list[int] = []
        #: held while this handle signals its group, and when it gives the group back:
        #: a group back in the pool may already hold the next attempt's processes
        self._group_lock = threading.Lock()
        self._given_back = False

    @property
    def kernel_limits(self) -> bool:
        return self.group is not None

    def wait(self, timeout: float | None) -> int | None:
        code = super().wait(timeout)
        return None if code is None else _job_code(code)

    def stop(self, grace_s: float, *, force: bool = False) -> int:
        """SIGTERM every process of the job, ``grace_s`` to exit, then kill the sandbox."""
        self._identify()  # before a reap below: then /proc/<pid> is gone
        if not force and self._popen.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                self._signal_job(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(grace_s)
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # the sandbox's PID 1 dies with it
            with self._group_lock:
                if self.group is not None and not self._given_back:
                    self.group.kill_all()
            try:
                self._popen.wait(_KILL_DEADLINE_S)
            except subprocess.TimeoutExpired:
                raise ExecutorError(
                    f"sandbox {self.pid} survived SIGKILL for {_KILL_DEADLINE_S} s", pid=self.pid
                ) from None
        code = self._popen.returncode
        assert code is not None
        return _job_code(code)

    def _signal_job(self, sig: signal.Signals) -> None:
        """Signal the job's processes, not bwrap's own two (they would end the sandbox)."""
        try:
            monitors = {self.pid, *(c.pid for c in self._root.children())}
            if self.group is not None:
                with self._group_lock:
                    if not self._given_back:
                        self.group.signal_all(sig, sparing=frozenset(monitors))
                return
            for child in self._root.children(recursive=True):
                if child.pid not in monitors:
                    with contextlib.suppress(psutil.Error):
                        child.send_signal(sig)
        except psutil.Error:
            pass

    def cleanup(self) -> None:
        """After the exit: the namespace is gone; give the cgroups back (figures kept),
        once a kill of this handle's in progress is over, and never signal them again."""
        if self.group is not None and self._tree is not None:
            with self._group_lock:
                if not self._given_back:
                    self._given_back = True
                    self._tree.release(self.group)
        super().cleanup()
        fds, self.held_fds = self.held_fds, []
        for fd in fds:
            os.close(fd)

    def _finished(self) -> bool:
        self._identify()  # before the reap
        return self._popen.poll() is not None

    def _processes(self) -> list[psutil.Process]:
        """The processes of the attempt's cgroup (bwrap's and the job's): one read of
        its ``cgroup.procs``, where psutil's walk of the descendants reads every process
        of the host (≈ 4.8 ms a sample with a few hundred). Without a group, that walk."""
        if self.group is None:
            return super()._processes()
        # a group given back may hold the next attempt's processes; one being signalled,
        # killed or given back (the lock held) keeps the last sample, without a wait
        if not self._group_lock.acquire(blocking=False):
            raise psutil.NoSuchProcess(self.pid)
        try:
            if self._given_back:
                raise psutil.NoSuchProcess(self.pid)
            pids = self.group.pids()
        finally:
            self._group_lock.release()
        found = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):  # ended meanwhile
                found.append(psutil.Process(pid))
        return found

    def sample(self) -> ResourceUsage:
        usage = super().sample()
        if self.group is None:
            return usage
        # The memory figures are the kernel's, the ones its limit applies to: a sum of the
        # processes' RSS counts shared pages once per process (the sandbox's monitors, the
        # interpreter's libraries) and can exceed the limit the kernel holds the job to.
        figures = self.group.usage()
        return replace(
            usage,
            rss_bytes=figures.memory_bytes if self._popen.poll() is None else usage.rss_bytes,
            peak_rss_bytes=figures.peak_memory_bytes or usage.peak_rss_bytes,
            cpu_time_s=max(figures.cpu_time_s, usage.cpu_time_s or 0.0),
        )

    def oom_killed(self) -> bool:
        return self.group is not None and self.group.oom_kills() > 0

    def pids_exhausted(self) -> int | None:
        if self.group is None or self.group.pids_limit_hits() == 0:
            return None
        return self.group.pids_max


def _job_code(code: int) -> int:
    """bwrap exits with 128 + n when the job was killed by signal n (as shells do)."""
    if 128 < code < 128 + signal.NSIG:
        return -(code - 128)
    return code


class SandboxedExecutor:
    """Starts each attempt in a sandbox. A child's parent-death signal fires when the
    *thread* that forked it ends: processes are started from a thread that outlives
    them (the claim loop, see ``base.outlives_its_processes``) or from one long-lived
    thread of the executor's own (for the others, e.g. a setup thread).

    While a slot is idle the node may :meth:`park` a sandbox in the spare job directory:
    the sandbox, its cgroups and the job's user are set up ahead, and the attempt that
    then runs in that directory only lets it go on (:meth:`start`). One at most, used
    once; discarded (and the attempt started cold) when the attempt does not match it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="jobyard-spawn")
        self._parker = Parker(sandbox, self._spawner, self._limit)

    def park(self, parking: Parking) -> None:
        """Park a sandbox in ``parking``'s directory (see :meth:`Parker.park`)."""
        self._parker.park(parking)

    def close_parking(self) -> None:
        """Park no more; end the parked sandbox and wait for the discards under way."""
        self._parker.close()

    def _limit(self, group: JobCgroup, spec: LaunchSpec) -> None:
        """Set ``spec``'s limits on ``group`` (OSError when the kernel refuses one)."""
        group.limit(
            memory_bytes=spec.memory_limit_bytes,
            pids_max=self.sandbox.pids_max,
            cpu_slots=spec.cpu_slots,
        )

    def start(self, spec: LaunchSpec) -> SandboxHandle:
        if spec.argv:
            argv = list(spec.argv)
            self._check_program(argv[0], spec)
        elif spec.entrypoint is not None:
            argv = ["/bin/sh", "-c", spec.entrypoint]
        else:
            raise ExecutorError("the launch spec has neither argv nor entrypoint")
        tree = self.sandbox.cgroups
        parked = self._parker.take(spec)
        if parked is not None and self._parker.go(parked, spec, argv) is not None:
            assert parked.popen is not None and parked.root is not None
            handle = SandboxHandle(
                parked.popen, spec.log_path, parked.root, parked.group, tree, parked=True
            )
            handle.held_fds, parked.dir_fds = parked.dir_fds, []
            return handle
        group = None
        if tree is not None:
            group = tree.acquire()
            try:
                self._limit(group, spec)
            except OSError as e:
                group.close()  # its limits are not known any more: not reused
                raise ExecutorError(f"cannot set the job's resource limits: {e}") from e
        try:
            if thread_outlives_its_processes():  # no hand-off: ≈ 0.2 ms of CPU per job
                return self._spawn(spec, argv, group)
            return self._spawner.submit(self._spawn, spec, argv, group).result()
        except BaseException:
            if tree is not None and group is not None:
                tree.release(group)
            raise

    def _check_program(self, program: str, spec: LaunchSpec) -> None:
        """Fail like a failed ``exec`` when the job's program is not there (as the sandbox
        sees it): a start error, not a run that exits with 127."""
        if "/" in program:
            candidates = [os.path.join(spec.workdir, program)]
        else:
            path = spec.env.get("PATH", "")
            candidates = [os.path.join(d, program) for d in path.split(os.pathsep) if d]
        visible = (*self.sandbox.visible, f"{spec.workdir}/")
        for candidate in candidates:
            full = os.path.normpath(candidate)
            if full.startswith(visible) and os.path.isfile(full) and os.access(full, os.X_OK):
                return
        message = f"jobyard: cannot start {program!r}: no such program in the job's sandbox"
        with open_log(spec) as log:
            log.write(message.encode("utf-8", "replace") + b"\n")
        raise ExecutorError(message, program=program)

    def _spawn(self, spec: LaunchSpec, argv: list[str], group: JobCgroup | None) -> SandboxHandle:
        status = spec.status_path or spec.log_path.with_suffix(".exit")
        with open_log(spec) as log:
            try:
                status.unlink(missing_ok=True)
                status_fd = os.open(status, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                raise ExecutorError(f"cannot create {status}: {exc}") from exc
            try:
                args = self.sandbox.command(spec, argv, status_fd=status_fd)
                env = chain_env(spec.env)

                def start(args: list[str]) -> subprocess.Popen[bytes]:
                    return subprocess.Popen(  # noqa: S603 - argv comes from the job spec
                        args,
                        cwd=spec.workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        close_fds=True,
                        pass_fds=(status_fd,),
                        start_new_session=True,
                    )

                popen = spawn_in(group, args, start)
            except (OSError, ValueError, KeyError) as exc:
                message = f"jobyard: cannot start the job's sandbox: {exc}"
                log.write(message.encode("utf-8", "replace") + b"\n")
                raise ExecutorError(message, program=argv[0]) from exc
            finally:
                os.close(status_fd)
        # its psutil identity read on first use (see SandboxHandle)
        return SandboxHandle(popen, spec.log_path, None, group, self.sandbox.cgroups)

    def kill_orphan(self, pid: int, create_time: float) -> bool:
        return kill_group_of(pid, create_time)

    def close(self) -> None:
        """End the parked sandbox, if any; remove this node's cgroups (those still in use
        stay for the next start)."""
        self.close_parking()
        if self.sandbox.cgroups is not None:
            self.sandbox.cgroups.close()

    def sweep(self) -> int:
        """Kill what a previous life of this node left in its cgroups."""
        if self.sandbox.cgroups is None:
            return 0
        return self.sandbox.cgroups.sweep()
