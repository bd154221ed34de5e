"""Kernel resource limits for job attempts: one cgroup (v1 hierarchy) per attempt.

Each attempt gets a group in the memory, pids, cpu and cpuacct controllers below this
node's own group, ``jobyard-<node>-<data dir digest>``:
``memory.limit_in_bytes`` enforces the memory limit exactly (the kernel's OOM killer
ends the job, no sampling gap), ``pids.max`` keeps a fork bomb inside its job,
``cpu.cfs_quota_us`` caps the job at its CPU slots, and every process of the job —
also one that called ``setsid()`` — is found through ``cgroup.procs``. Usage figures
(memory now and at its peak, CPU time) come from the cgroup.

Only the v1 hierarchy is implemented (what these machines mount); a host with only
cgroup v2 runs jobs without kernel limits and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
_CFS_PERIOD_US = 100_000
_KILL_DEADLINE_S = 5.0
_POLL_S = 0.01


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


def _write(path: Path, value: str) -> None:
    with path.open("w") as f:
        f.write(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: Path, key: str) -> int:
    """The value of ``key`` in a ``name value`` file (``memory.oom_control``, ``pids.events``)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class CgroupUsage:
    memory_bytes: int
    peak_memory_bytes: int
    cpu_time_s: float


class JobCgroup:
    """The cgroups of one attempt, one directory per controller."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self._final: CgroupUsage | None = None
        self._oom_kills = 0
        self._pids_hits = 0
        self.pids_max: int | None = None

    def limit(self, *, memory_bytes: int | None, pids_max: int | None, cpu_slots: int) -> None:
        """Set the attempt's limits (before any of its processes runs)."""
        if memory_bytes is not None:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory_bytes))
            memsw = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
            with contextlib.suppress(FileNotFoundError):  # no swapping past the limit either
                _write(memsw, str(memory_bytes))
        if pids_max is not None:
            _write(self.dirs["pids"] / "pids.max", str(pids_max))
            self.pids_max = pids_max
        if cpu_slots > 0:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(_CFS_PERIOD_US))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(cpu_slots * _CFS_PERIOD_US))

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a new process writes its pid to, to join."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> list[int]:
        """Every process in the attempt's group (host pids)."""
        try:
            text = (self.dirs["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def usage(self) -> CgroupUsage:
        if self._final is not None:
            return self._final
        mem = self.dirs["memory"]
        cpu_ns = _read_int(self.dirs["cpuacct"] / "cpuacct.usage") or 0
        return CgroupUsage(
            memory_bytes=_read_int(mem / "memory.usage_in_bytes") or 0,
            peak_memory_bytes=_read_int(mem / "memory.max_usage_in_bytes") or 0,
            cpu_time_s=cpu_ns / 1e9,
        )

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the memory limit."""
        if self._final is not None:
            return self._oom_kills
        return _read_keyed(self.dirs["memory"] / "memory.oom_control", "oom_kill")

    def pids_limit_hits(self) -> int:
        """How many forks failed because the attempt had ``pids.max`` processes."""
        if self._final is not None:
            return self._pids_hits
        return _read_keyed(self.dirs["pids"] / "pids.events", "max")

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

    def close(self) -> bool:
        """Keep the last figures, kill what is left and remove the groups; False when a
        group is still busy (its last processes are still exiting: remove it later)."""
        if self._final is None:
            usage = self.usage()
            self._oom_kills = self.oom_kills()
            self._pids_hits = self.pids_limit_hits()
            self._final = usage
        self.signal_all(signal.SIGKILL)
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


class CgroupTree:
    """This node's cgroups: ``<controller mount>/<own group>/jobyard-<node>-<data dir
    digest>/<attempt>``."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots
        self._busy: list[JobCgroup] = []  #: closed, but some processes were still exiting
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
        return cls(roots), ""

    def release(self, group: JobCgroup) -> None:
        """Close an attempt's group; one still busy is removed at a later create."""
        if not group.close():
            with self._lock:
                self._busy.append(group)

    def create(self, name: str) -> JobCgroup:
        """A fresh group for one attempt (one left over under that name is emptied first)."""
        with self._lock:
            self._busy = [g for g in self._busy if not g.remove()]
        dirs = {c: root / _safe_name(name) for c, root in self.roots.items()}
        group = JobCgroup(dirs)
        for d in dirs.values():
            try:
                d.mkdir()
            except FileExistsError:
                group.kill_all()
        return group

    def close(self) -> None:
        """At the node's stop: remove the groups that were still busy, then the node's
        own groups (a group still in use stays: the next start sweeps it)."""
        with self._lock:
            self._busy = [g for g in self._busy if not g.remove()]
        for root in self.roots.values():
            with contextlib.suppress(OSError):
                root.rmdir()

    def sweep(self) -> int:
        """Kill every process left in this node's attempt groups (by a previous life of
        the node, owned by a job or not) and remove the groups; the number killed."""
        killed = 0
        names = {p.name for root in self.roots.values() if root.exists() for p in root.iterdir()}
        for name in sorted(n for n in names if (self.roots["pids"] / n).is_dir()):
            group = JobCgroup({c: root / name for c, root in self.roots.items()})
            killed += len(group.pids())
            group.kill_all()
            group.close()
        return killed
