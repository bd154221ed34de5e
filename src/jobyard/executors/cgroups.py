"""Kernel resource limits for job attempts: a cgroup (v1 hierarchy) per running attempt.

Each running attempt has a group in the memory, pids, cpu and cpuacct controllers below
this node's own group, ``jobyard-<node>-<data dir digest>``:
``memory.limit_in_bytes`` enforces the memory limit exactly (the kernel's OOM killer
ends the job, no sampling gap), ``pids.max`` keeps a fork bomb inside its job,
``cpu.cfs_quota_us`` caps the job at its CPU slots, and every process of the job —
also one that called ``setsid()`` — is found through ``cgroup.procs``. Usage figures
(memory now and at its peak, CPU time) come from the cgroup.

Groups are reused: an attempt takes an idle group of the node's pool (made when none is
idle) and gives it back once its processes are gone. Making and removing four groups per
attempt cost ≈ 0.8 ms of the server's CPU, and a removed memory group lingers in the
kernel while page cache it charged stays. Per attempt, the limits are written where they
differ from the group's last ones, the peak memory and CPU counters are reset, and the
OOM-kill and fork-failure counters are read as a baseline. A group given back holding
more than ``_REUSE_MAX_BYTES`` of memory charges (page cache of files its job wrote) is
removed instead, so an attempt's memory figures include at most that much of an earlier
one's.

A job's first process is in its group from its fork on: the server's thread that starts
it joins the group itself (``0`` written to a ``tasks`` file moves the writing thread
only, and a child starts in the groups of the thread that forks it), forks, and goes
back to its own groups (:meth:`JobCgroup.spawn`); the server's other threads stay put.

Only the v1 hierarchy is implemented (what these machines mount); a host with only
cgroup v2 runs jobs without kernel limits and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("jobyard.executors")

_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
#: the order a thread joins a job's groups in (it leaves them the other way round):
#: ``cpu`` last and first out, the shortest time under the job's CPU quota
_JOIN_ORDER = ("memory", "cpuacct", "pids", "cpu")
_CFS_PERIOD_US = 100_000
_KILL_DEADLINE_S = 5.0
_POLL_S = 0.01
_REUSE_MAX_BYTES = 8 * 1024 * 1024
_UNLIMITED = "-1"


def _mounts(mounts_file: Path) -> dict[str, Path]:
    """Mount point of each v1 controller (``cpu,cpuacct`` mounted together counts for both)."""
    found: dict[str, Path] = {}
    for line in mounts_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] != "cgroup":
            continue
        for opt in parts[3].split(","):
            if opt in _CONTROLLERS and opt not in found:
                found[opt] = Path(parts[1])
    return found


def _own_groups(cgroup_file: Path) -> dict[str, str]:
    """This process's group in each v1 controller (``/proc/self/cgroup``)."""
    own: dict[str, str] = {}
    for line in cgroup_file.read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            own[name] = path
    return own


def node_group(node_id: str, data_dir: Path) -> str:
    """The name of a node's group: its id and its data directory (a previous life of a
    node has both; two servers of one id on one host keep apart)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return f"jobyard-{_safe_name(node_id)}-{digest}"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "node"


# Control files are read and written with plain system calls: Python's text files cost
# ≈ 35-45 µs per small file, os.read ≈ 14 µs, and an attempt touches about ten. Their
# paths are joined once per attempt (a pathlib join and ``str`` cost ≈ 8 µs, as much as
# the system calls).

#: the control files an attempt reads or writes, and their controllers
_FILES = {
    "memory.limit_in_bytes": "memory",
    "memory.memsw.limit_in_bytes": "memory",
    "memory.usage_in_bytes": "memory",
    "memory.max_usage_in_bytes": "memory",
    "memory.oom_control": "memory",
    "pids.max": "pids",
    "pids.events": "pids",
    "cgroup.procs": "pids",
    "cpu.cfs_period_us": "cpu",
    "cpu.cfs_quota_us": "cpu",
    "cpuacct.usage": "cpuacct",
}


def _write(path: str | Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str | Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _read_int(path: str | Path) -> int | None:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: str | Path, key: str) -> int:
    """The value of ``key`` in a ``name value`` file (``memory.oom_control``, ``pids.events``)."""
    wanted = key.encode()
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(b" ")
            if name == wanted:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


class _ThreadHomes:
    """The groups each thread that starts jobs' processes belongs in: its own, read from
    ``/proc/thread-self/cgroup`` before its first start (the node's own groups, where
    the process was at its start, unless someone moved the thread since), as the
    ``tasks`` file of each controller that takes it back."""

    def __init__(self, mounts: dict[str, Path]) -> None:
        self._mounts = mounts
        self._local = threading.local()
        #: each hierarchy's root, where a thread goes when its own group refuses it
        self.root_tasks = {c: f"{m}/tasks" for c, m in mounts.items()}

    def tasks(self) -> dict[str, str]:
        home: dict[str, str] | None = getattr(self._local, "tasks", None)
        if home is None:
            own = _own_groups(Path("/proc/thread-self/cgroup"))
            home = {
                c: os.path.join(m, own.get(c, "/").lstrip("/"), "tasks")
                for c, m in self._mounts.items()
            }
            self._local.tasks = home
        return home

    def held(self) -> dict[str, int]:
        """The calling thread's :meth:`tasks` files, opened once and kept open for the
        thread's life: going home is then a write per controller, not an open, a write
        and a close (≈ 10 µs less each). A file that cannot be opened is left out."""
        fds: _Fds | None = getattr(self._local, "fds", None)
        if fds is None:
            fds = self._local.fds = _Fds()
            for c, path in self.tasks().items():
                with contextlib.suppress(OSError):  # then its path is written to
                    fds.fds[c] = os.open(path, os.O_WRONLY)
        return fds.fds


class _Fds:
    """Descriptors closed when the last reference goes (a thread's: when it ends)."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}

    def __del__(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class CgroupUsage:
    memory_bytes: int
    peak_memory_bytes: int
    cpu_time_s: float


@dataclass
class _Limits:
    """The limits a group has now (what the kernel holds; a new group has none)."""

    memory_bytes: int | None = None
    pids_max: int | None = None
    cpu_slots: int = 0


class JobCgroup:
    """The cgroups one attempt runs in, one directory per controller. Counters that
    cannot be reset (OOM kills, failed forks) count from the baselines read at
    :meth:`limit`; the figures are kept when the attempt gives its group back."""

    def __init__(
        self,
        dirs: dict[str, Path],
        limits: _Limits | None = None,
        homes: _ThreadHomes | None = None,
    ) -> None:
        self.dirs = dirs
        self._homes = homes
        #: the full path of each of ``_FILES``
        self.file = {name: f"{dirs[c]}/{name}" for name, c in _FILES.items()}
        self.limits = limits if limits is not None else _Limits()
        self._final: CgroupUsage | None = None
        self._oom_base = 0
        self._pids_base = 0
        self._oom_kills = 0
        self._pids_hits = 0
        self._empty = False  #: :meth:`finish` found no process left
        #: :meth:`finish` found processes (and killed them): the sandbox's last ones
        #: are often still exiting then, and a read right after lists them again
        self.stragglers = False
        self.pids_max: int | None = None
        #: a server's thread could not leave the group (never reused, see :meth:`spawn`)
        self.stranded = False

    @property
    def name(self) -> str:
        return self.dirs["pids"].name

    def limit(self, *, memory_bytes: int | None, pids_max: int | None, cpu_slots: int) -> None:
        """Set the attempt's limits and start its counters (before any of its processes
        runs); only the limits that differ from the group's last ones are written."""
        have = self.limits
        if memory_bytes != have.memory_bytes:
            self._set_memory(memory_bytes)
        if pids_max != have.pids_max:
            _write(self.file["pids.max"], "max" if pids_max is None else str(pids_max))
            have.pids_max = pids_max
        if cpu_slots != have.cpu_slots:
            quota = str(cpu_slots * _CFS_PERIOD_US) if cpu_slots > 0 else _UNLIMITED
            _write(self.file["cpu.cfs_period_us"], str(_CFS_PERIOD_US))
            _write(self.file["cpu.cfs_quota_us"], quota)
            have.cpu_slots = cpu_slots
        elif cpu_slots > 0:
            # the same quota again (≈ 3 µs): the kernel refills the group's runtime and
            # lifts a throttle the previous attempt left in this period, which would
            # stall the server's thread that joins the group to start this attempt's
            # process (and that process) until the period's end
            _write(self.file["cpu.cfs_quota_us"], str(cpu_slots * _CFS_PERIOD_US))
        self.pids_max = pids_max
        _write(self.file["memory.max_usage_in_bytes"], "0")
        _write(self.file["cpuacct.usage"], "0")
        self._oom_base = _read_keyed(self.file["memory.oom_control"], "oom_kill")
        self._pids_base = _read_keyed(self.file["pids.events"], "max")

    def _set_memory(self, memory_bytes: int | None) -> None:
        """The memory limit, and the same for memory plus swap (no swapping past it).
        The kernel wants memory ≤ memory+swap at every step: raise the second first."""
        value = _UNLIMITED if memory_bytes is None else str(memory_bytes)
        old = self.limits.memory_bytes
        raising = memory_bytes is None or (old is not None and memory_bytes > old)
        files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        for name in reversed(files) if raising else files:
            try:
                _write(self.file[name], value)
            except FileNotFoundError:  # no swap accounting on this host
                continue
        self.limits.memory_bytes = memory_bytes

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files that move a process given by its pid."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def tasks_files(self) -> list[Path]:
        """The ``tasks`` files a new single-threaded process writes ``0`` to, to join
        (itself, its one thread: the whole process). Cheaper than its pid written to
        ``cgroup.procs``: a thread that moves itself needs no lock of every thread
        group, whose taking waits for an RCU grace period (on Linux 6.18 here, four
        such moves after a pause: 6-16 ms, four of ``0``: 0.1-0.3 ms)."""
        return [d / "tasks" for d in self.dirs.values()]

    def shell_joined(self, args: list[str]) -> list[str]:
        """``args`` behind a shell that joins the group first (``0`` to its ``tasks``)."""
        joins = " && ".join(f"echo 0 > {shlex.quote(str(f))}" for f in self.tasks_files())
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *args]

    def spawn(
        self, args: list[str], start: Callable[[list[str]], subprocess.Popen[bytes]]
    ) -> subprocess.Popen[bytes]:
        """``start(args)`` (a ``Popen``) with the new process in this group from its fork
        on: the calling thread joins the group's four groups, forks (``subprocess``
        vforks: the thread waits until the child's ``exec``, by then the child is in
        the groups for good), and goes back to its own groups. No shell in front (its
        start and four writes cost ≈ 1 ms of the chain and 0.7 ms of CPU per job).

        While the thread is in: the process lists the server's pid in the group's
        ``cgroup.procs`` (:meth:`pids` leaves it out: no kill of the group hits the
        server), the thread counts in ``pids.current`` (a ``pids.max`` of 1 fails the
        fork: the start fails), its CPU counts as the job's (``cpu`` is joined last and left
        first; :meth:`limit` lifted any throttle), its memory is charged to its
        process's (v1 charges a page to the group of the ``mm``'s owner, the server's
        main thread) and only kernel objects it allocates meanwhile, such as the child's,
        go to the job's. The thread group's leader never joins (the memory group's OOM
        killer picks among the processes whose leader is in it): from that thread, and
        when a join fails (the thread back in its groups first), ``args`` run behind a
        shell that joins (:meth:`shell_joined`), as the child's own first act."""
        homes = self._homes
        joined: list[str] = []
        if homes is not None and threading.get_native_id() != os.getpid():
            try:
                homes.held()  # where it goes back to, opened before it moves the first time
                for c in _JOIN_ORDER:
                    _write(f"{self.dirs[c]}/tasks", "0")
                    joined.append(c)
            except OSError as e:
                log.warning("a thread cannot join cgroup %s (%s): a shell joins", self.name, e)
                if joined:
                    self._leave(homes, joined)
                joined = []
        try:
            return start(args if joined else self.shell_joined(args))
        finally:
            if joined:
                assert homes is not None
                self._leave(homes, joined)

    def _leave(self, homes: _ThreadHomes, joined: list[str]) -> None:
        """The calling thread back in its own groups from those it ``joined``; where the
        kernel refuses that twice, in the hierarchy's root; where it refuses that too,
        the group is marked :attr:`stranded` (never reused) and the error logged."""
        tasks, held = homes.tasks(), homes.held()
        left_in: list[str] = []
        for c in reversed(joined):
            fd = held.get(c)
            first: int | str = tasks[c] if fd is None else fd
            for target in (first, tasks[c], homes.root_tasks[c]):
                try:
                    if isinstance(target, int):
                        os.pwrite(target, b"0", 0)
                    else:
                        _write(target, "0")
                    break
                except OSError as e:
                    where = tasks[c] if isinstance(target, int) else target
                    log.error("a thread cannot move to cgroup %s: %s", where, e)
            else:
                left_in.append(c)
        if left_in:
            self.stranded = True
            log.error(
                "thread %d stays in the job's cgroup %s (%s): the group is not reused",
                threading.get_native_id(),
                self.name,
                ", ".join(left_in),
            )

    def pids(self) -> list[int]:
        """Every process in the attempt's group (host pids), never the server's own (it
        is listed while one of its threads starts a process there, see :meth:`spawn`)."""
        try:
            text = _read(self.file["cgroup.procs"])
        except OSError:
            return []
        me = os.getpid()
        return [pid for pid in map(int, text.split()) if pid != me]

    def usage(self) -> CgroupUsage:
        if self._final is not None:
            return self._final
        file = self.file
        cpu_ns = _read_int(file["cpuacct.usage"]) or 0
        return CgroupUsage(
            memory_bytes=_read_int(file["memory.usage_in_bytes"]) or 0,
            peak_memory_bytes=_read_int(file["memory.max_usage_in_bytes"]) or 0,
            cpu_time_s=cpu_ns / 1e9,
        )

    def oom_kills(self) -> int:
        """How many processes of the attempt the kernel killed for the memory limit."""
        if self._final is not None:
            return self._oom_kills
        kills = _read_keyed(self.file["memory.oom_control"], "oom_kill")
        return kills - self._oom_base

    def pids_limit_hits(self) -> int:
        """How many forks of the attempt failed because it had ``pids.max`` processes."""
        if self._final is not None:
            return self._pids_hits
        return _read_keyed(self.file["pids.events"], "max") - self._pids_base

    def signal_all(self, sig: signal.Signals, *, sparing: frozenset[int] = frozenset()) -> None:
        for pid in self.pids():
            if pid not in sparing:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def kill_all(self) -> bool:
        """SIGKILL every process of the group until it is empty (a process forked
        meanwhile is killed in the next round); True once the group is empty."""
        deadline = time.monotonic() + _KILL_DEADLINE_S
        while self.pids():
            if time.monotonic() >= deadline:
                return False
            self.signal_all(signal.SIGKILL)
            time.sleep(_POLL_S)
        return True

    def finish(self) -> None:
        """Keep the attempt's last figures and kill what is left of it."""
        if self._final is None:
            usage = self.usage()
            self._oom_kills = self.oom_kills()
            self._pids_hits = self.pids_limit_hits()
            self._final = usage
        left = self.pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._empty = not left
        self.stragglers = bool(left)

    def close(self) -> bool:
        """:meth:`finish`, then remove the groups; False when a group is still busy (its
        last processes are still exiting: remove it later)."""
        self.finish()
        return self.remove()

    def remove(self) -> bool:
        """Remove the group's directories; False while a process is still in one."""
        removed = True
        for d in self.dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                removed = False
        return removed

    def reusable(self) -> bool:
        """Empty, and holding little memory: another attempt may run in it (after
        :meth:`finish`, from what it saw; later, from the group as it is now)."""
        if self.stranded:
            return False
        if self._empty:
            self._empty = False  # seen once: ask the kernel next time
            assert self._final is not None
            return self._final.memory_bytes <= _REUSE_MAX_BYTES
        if self.pids():
            return False
        held = _read_int(self.file["memory.usage_in_bytes"])
        return held is not None and held <= _REUSE_MAX_BYTES


def spawn_in(
    group: JobCgroup | None,
    args: list[str],
    start: Callable[[list[str]], subprocess.Popen[bytes]],
) -> subprocess.Popen[bytes]:
    """``start(args)``, its process in ``group`` from its fork on (see
    :meth:`JobCgroup.spawn`; in no group for None)."""
    return start(args) if group is None else group.spawn(args, start)


class CgroupTree:
    """This node's cgroups: ``<controller mount>/<own group>/jobyard-<node>-<data dir
    digest>/<group>``, a pool of groups that attempts take and give back."""

    def __init__(self, roots: dict[str, Path], mounts: dict[str, Path] | None = None) -> None:
        self.roots = roots
        #: where the threads that start jobs' processes go back to (None: a shell joins)
        self._homes = _ThreadHomes(mounts) if mounts is not None else None
        self._idle: list[tuple[dict[str, Path], _Limits]] = []  #: groups to reuse
        self._busy: list[JobCgroup] = []  #: given back while processes were still exiting
        self._made = 0
        self._lock = threading.Lock()

    @classmethod
    def detect(
        cls,
        node_id: str,
        data_dir: Path,
        *,
        mounts_file: Path = Path("/proc/self/mounts"),
        cgroup_file: Path = Path("/proc/self/cgroup"),
    ) -> tuple[CgroupTree | None, str]:
        """The node's tree, or None and why the host cannot give jobs kernel limits."""
        try:
            mounts = _mounts(mounts_file)
            own = _own_groups(cgroup_file)
        except OSError as e:
            return None, f"cannot read the cgroup mounts: {e}"
        missing = [c for c in _CONTROLLERS if c not in mounts]
        if missing:
            return None, (
                "the cgroup v1 controllers " + ", ".join(missing) + " are not mounted"
                " (cgroup v2 alone is not supported yet)"
            )
        roots: dict[str, Path] = {}
        for name in _CONTROLLERS:
            base = mounts[name] / own.get(name, "/").lstrip("/")
            roots[name] = base / node_group(node_id, data_dir)
        try:
            for root in roots.values():
                root.mkdir(exist_ok=True)
        except OSError as e:
            return None, f"cannot create cgroups ({e.strerror}: {e.filename})"
        return cls(roots, {c: mounts[c] for c in _CONTROLLERS}), ""

    def acquire(self) -> JobCgroup:
        """A group for one attempt: an idle one of the pool, else a new one."""
        with self._lock:
            self._settle_busy()
            if self._idle:
                dirs, limits = self._idle.pop()
                return JobCgroup(dirs, limits, self._homes)
            self._made += 1
            name = f"g{self._made}"
        return self.create(name)

    def release(self, group: JobCgroup) -> None:
        """An attempt gives its group back (its figures are kept): the group goes back
        to the pool, or is removed, or waits while its last processes exit."""
        group.finish()
        with self._lock:
            if group.stragglers:  # killed just now, still exiting: settled at an acquire
                self._busy.append(group)
            else:
                self._give_back(group)

    def _give_back(self, group: JobCgroup) -> None:
        if group.reusable():
            self._idle.append((group.dirs, group.limits))
        elif group.pids() or not group.remove():
            self._busy.append(group)

    def _settle_busy(self) -> None:
        busy, self._busy = self._busy, []
        for group in busy:
            self._give_back(group)

    def create(self, name: str) -> JobCgroup:
        """A fresh group of that name (one left over under that name is emptied first)."""
        dirs = {c: root / _safe_name(name) for c, root in self.roots.items()}
        group = JobCgroup(dirs, homes=self._homes)
        for d in dirs.values():
            try:
                d.mkdir()
            except FileExistsError:
                group.kill_all()
        return group

    def close(self) -> None:
        """At the node's stop: remove the pool's groups (those still busy too, if their
        processes are gone by now), then the node's own groups (a group still in use
        stays: the next start sweeps it)."""
        with self._lock:
            groups = [JobCgroup(dirs) for dirs, _ in self._idle] + self._busy
            self._idle, self._busy = [], [g for g in groups if not g.remove()]
        for root in self.roots.values():
            with contextlib.suppress(OSError):
                root.rmdir()

    def sweep(self) -> int:
        """Kill every process left in this node's groups (by a previous life of the node,
        owned by a job or not) and remove the groups; the number killed."""
        killed = 0
        with self._lock:  # groups of the pool are among those removed
            self._idle, self._busy = [], []
        names = {p.name for root in self.roots.values() if root.exists() for p in root.iterdir()}
        for name in sorted(n for n in names if (self.roots["pids"] / n).is_dir()):
            group = JobCgroup({c: root / name for c, root in self.roots.items()})
            killed += len(group.pids())
            group.kill_all()
            group.close()
        return killed
