"""A sandbox's first process starts in its attempt's cgroups without a shell in front:
the server's thread that forks it joins the groups meanwhile and goes back (see
``JobCgroup.spawn``). Only that thread moves, it always goes back (or the group is never
reused), and a job never starts outside its groups. Real sandboxes in the host's
cgroup v1 hierarchy."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from jobyard.errors import ExecutorError
from jobyard.executors.base import LaunchSpec, Parking
from jobyard.executors.cgroups import CgroupTree, JobCgroup
from jobyard.executors.sandbox import Sandbox, SandboxedExecutor, detect
from tests.conftest import wait_for
from tests.support import procs
from tests.support.sandbox import job_spec, require_sandbox

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
T = TypeVar("T")


def _groups(path: str) -> dict[str, str]:
    """The v1 group in each of the four controllers, from a ``/proc/…/cgroup`` file."""
    found: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        _, names, group = line.split(":", 2)
        for name in names.split(","):
            if name in CONTROLLERS:
                found[name] = group
    return found


def _of_thread(tid: int) -> dict[str, str]:
    return _groups(f"/proc/self/task/{tid}/cgroup")


def _threads_now() -> dict[int, dict[str, str]]:
    """The groups of each thread of this process now (a thread that ends meanwhile, such
    as an earlier test's pool thread, is left out)."""
    found: dict[int, dict[str, str]] = {}
    for t in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found[int(t)] = _of_thread(int(t))
    return found


def _in(group: JobCgroup, groups: dict[str, str]) -> bool:
    """Whether ``groups`` are ``group``'s, in all four controllers."""
    return all(str(group.dirs[c]).endswith(groups[c]) and groups[c] != "/" for c in CONTROLLERS)


def _make(tmp_path: Path, pids_max: int | None) -> SandboxedExecutor:
    require_sandbox()
    os.chmod(tmp_path, 0o755)
    box, support = detect(node_id="join-test", data_dir=tmp_path / "data", pids_max=pids_max)
    if box is None or box.cgroups is None:
        pytest.skip(f"no cgroups for jobs here: {support.reason or support.limits_reason}")
    return SandboxedExecutor(box)


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[SandboxedExecutor]:
    ex = _make(tmp_path, 64)
    yield ex
    ex.sweep()
    ex.close()


def _tree(ex: SandboxedExecutor) -> CgroupTree:
    assert ex.sandbox.cgroups is not None
    return ex.sandbox.cgroups


class _Spy:
    """Wraps ``subprocess.Popen``: what the threads' groups are at the moment a
    jobyard spawning thread forks (the kernel's view, ``/proc/self/task``)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        prefix: str = "jobyard-spawn",
        probe: Callable[[], object] = lambda: None,
    ) -> None:
        self.calls: list[tuple[int, list[str], dict[int, dict[str, str]]]] = []
        self.probed: list[object] = []  #: what ``probe`` returned at each fork
        real = subprocess.Popen

        def popen(args: list[str], **kw: object) -> subprocess.Popen[bytes]:
            if threading.current_thread().name.startswith(prefix):
                tasks = _threads_now()
                self.calls.append((threading.get_native_id(), list(args), tasks))
                self.probed.append(probe())
            return real(args, **kw)  # type: ignore[call-overload,no-any-return]

        monkeypatch.setattr(subprocess, "Popen", popen)


def test_only_the_starting_thread_joins_the_jobs_groups_and_it_goes_back(
    executor: SandboxedExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _of_thread(threading.get_native_id())
    assert not any(p.endswith("/g1") for p in home.values())
    g1 = JobCgroup({c: root / "g1" for c, root in _tree(executor).roots.items()})

    def procs() -> tuple[str, list[int]]:  # the kernel's list, and the one kills use
        return (g1.dirs["pids"] / "cgroup.procs").read_text(), g1.pids()

    spy = _Spy(monkeypatch, probe=procs)
    job = executor.start(job_spec(tmp_path, "j", ["/bin/sh", "-c", "cat /proc/self/cgroup"]))
    group = job.group
    assert group is not None
    [(tid, args, tasks)] = spy.calls
    assert args[0] == executor.sandbox.bwrap  # no shell in front
    assert _in(group, tasks[tid]), tasks[tid]  # the forking thread, in the job's groups
    others = {t: g for t, g in tasks.items() if t != tid}
    assert others and all(g == home for g in others.values()), others  # the rest stay
    assert _of_thread(tid) == home  # and it is back
    # meanwhile the kernel lists the server's pid in the group; no kill of it sees it
    assert spy.probed == [(f"{os.getpid()}\n", [])]
    assert job.wait(30) == 0
    # the job's own view: a cgroup namespace rooted at its group in each controller
    seen = {
        name: path
        for line in (tmp_path / "j" / "log").read_text().splitlines()
        for _, names, path in [line.split(":", 2)]
        for name in names.split(",")
    }
    assert all(seen[c] == "/" for c in CONTROLLERS), seen
    job.cleanup()


def test_a_job_started_from_the_main_thread_has_a_shell_join_it(
    executor: SandboxedExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the thread group's leader never joins (the memory group's OOM killer picks among
    # the processes whose leader is in it): a shell joins, as its first act
    home = _of_thread(threading.get_native_id())
    spy = _Spy(monkeypatch, prefix="MainThread")
    monkeypatch.setattr(
        "jobyard.executors.sandbox.thread_outlives_its_processes", lambda: True
    )  # no hand-off to the spawning thread
    job = executor.start(job_spec(tmp_path, "m", ["/bin/sh", "-c", "sleep 60"]))
    group = job.group
    assert group is not None
    [(tid, args, tasks)] = spy.calls
    assert tid == os.getpid() and args[0] == "/bin/sh" and tasks[tid] == home
    wait_for(lambda: _in(group, _groups(f"/proc/{job.pid}/cgroup")))  # the shell's join
    assert _of_thread(tid) == home
    job.stop(0.0, force=True)
    job.cleanup()


def _in_thread(fn: Callable[[], T]) -> T:
    """``fn()``'s result, run in a thread of its own (never the main thread)."""
    out: list[T] = []
    t = threading.Thread(target=lambda: out.append(fn()), name="jobyard-test-join")
    t.start()
    t.join(60)
    assert out, "the thread failed"
    return out[0]


def _box_args(box: Sandbox, spec: LaunchSpec, argv: list[str]) -> list[str]:
    return box.command(spec, argv, status_fd=1)


def test_a_join_that_fails_half_way_leaves_the_thread_home_and_a_shell_join(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    tree = _tree(executor)
    group = tree.acquire()
    group.limit(memory_bytes=None, pids_max=None, cpu_slots=1)
    group.dirs["cpu"].rmdir()  # the last of the four: the thread joined three by then
    spec = job_spec(tmp_path, "half", ["/bin/touch", "ran"])
    args = _box_args(executor.sandbox, spec, ["/bin/touch", "ran"])
    home = _of_thread(threading.get_native_id())
    seen: dict[str, object] = {}

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        seen["argv"], seen["groups"] = argv, _of_thread(threading.get_native_id())
        return subprocess.Popen(argv, cwd=spec.workdir, stderr=subprocess.PIPE)

    def run() -> tuple[int, bytes, dict[str, str]]:
        popen = group.spawn(args, start)
        _, err = popen.communicate(timeout=30)
        return popen.returncode, err, _of_thread(threading.get_native_id())

    code, err, after = _in_thread(run)
    assert seen["groups"] == home  # back in all three before the fork
    assert after == home
    argv = seen["argv"]
    assert isinstance(argv, list) and argv[0] == "/bin/sh" and argv[4:] == args
    # the shell cannot join the removed group either: the job never runs, outside or in
    assert code != 0 and b"tasks" in err, err
    assert not (spec.workdir / "ran").exists()
    assert not group.stranded


def test_a_thread_refused_by_its_own_group_goes_to_the_root_or_strands_the_group(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    tree = _tree(executor)
    homes = tree._homes
    assert homes is not None
    spec = job_spec(tmp_path, "back", ["/bin/true"])
    args = _box_args(executor.sandbox, spec, ["/bin/true"])
    home = _of_thread(threading.get_native_id())
    real = homes.tasks()

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, cwd=spec.workdir)

    def run(root_too: bool) -> tuple[JobCgroup, dict[str, str]]:
        group = tree.acquire()
        group.limit(memory_bytes=None, pids_max=None, cpu_slots=0)
        broken = dict(homes.tasks(), pids="/nonexistent/tasks")
        homes._local.tasks = broken  # this thread's own pids group refuses it
        roots = dict(homes.root_tasks)
        if root_too:
            homes.root_tasks = dict(roots, pids="/nonexistent/tasks")
        try:
            group.spawn(args, start).wait(30)
            where = _of_thread(threading.get_native_id())
        finally:
            homes.root_tasks = roots
            homes._local.tasks = real
            Path(real["pids"]).write_text("0")  # home, whatever happened
        return group, where

    group, where = _in_thread(lambda: run(False))
    assert where["pids"] == "/"  # the hierarchy's root, out of the job's group
    assert {c: where[c] for c in ("memory", "cpu", "cpuacct")} == {
        c: home[c] for c in ("memory", "cpu", "cpuacct")
    }
    assert not group.stranded
    wait_for(lambda: not group.pids())
    tree.release(group)

    stranded, where = _in_thread(lambda: run(True))
    assert stranded.stranded
    assert where["pids"].endswith(f"/{stranded.name}")  # left in the job's pids group
    wait_for(lambda: not stranded.pids())
    tree.release(stranded)
    nxt = tree.acquire()
    assert nxt.name != stranded.name  # a stranded group is never reused
    tree.release(nxt)


def test_a_pids_limit_of_one_fails_the_start_with_the_thread_back_home(
    tmp_path: Path,
) -> None:
    ex = _make(tmp_path, 1)
    try:
        home = _of_thread(threading.get_native_id())
        with pytest.raises(ExecutorError, match="Resource temporarily unavailable"):
            ex.start(job_spec(tmp_path, "one", ["/bin/true"]))
        tid = ex._spawner.submit(threading.get_native_id).result()
        assert _of_thread(tid) == home
        group = _tree(ex).acquire()  # the same group, back in the pool, empty
        assert group.name == "g1" and not group.pids()
        assert int((group.dirs["pids"] / "pids.current").read_text()) == 0
        _tree(ex).release(group)
    finally:
        ex.sweep()
        ex.close()


def test_a_parked_sandbox_starts_in_its_group_without_a_shell(
    executor: SandboxedExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not executor.sandbox.parks:
        pytest.skip("this host parks no sandboxes")
    jobs = tmp_path / "jobs"
    spare = jobs / ".spare"
    (spare / "work" / "input").mkdir(parents=True)
    (spare / "logs").mkdir()
    os.chown(spare / "work", 65534, 65534)
    home = _of_thread(threading.get_native_id())
    spy = _Spy(monkeypatch)
    executor.park(
        Parking(
            workdir=spare / "work",
            log_path=spare / "logs" / ".parked.log",
            status_path=spare / "logs" / ".parked.exit",
            user=None,
            renames=threading.Lock(),
        )
    )
    parked = executor._parker._parked
    assert parked is not None
    parked.started.result()
    assert parked.popen is not None and parked.group is not None
    [(tid, args, tasks)] = spy.calls
    assert args[0] == executor.sandbox.bwrap
    assert _in(parked.group, tasks[tid])
    assert all(g == home for t, g in tasks.items() if t != tid)
    assert _of_thread(tid) == home
    pid = parked.popen.pid
    chain = wait_for(lambda: len(procs.tree(pid)) >= 3 and procs.tree(pid))
    for pid in chain:
        try:
            groups = _groups(f"/proc/{pid}/cgroup")
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                continue  # the stub's short-lived subshell, exited (its groups are gone)
        except (OSError, psutil.NoSuchProcess):
            continue
        assert _in(parked.group, groups), pid


def test_a_thread_goes_home_through_descriptors_it_keeps_until_it_ends(
    executor: SandboxedExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starting thread opens its own groups' ``tasks`` files once and keeps them: its
    later starts go home without opening them again; they are closed when it ends."""
    tree = _tree(executor)
    homes = tree._homes
    assert homes is not None
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, flags: int, *args: int) -> int:
        if threading.current_thread().name == "jobyard-test-join":
            opened.append(str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)

    def run() -> tuple[dict[str, str], list[dict[str, str]], list[str]]:
        where = []
        for name in ("first", "second"):
            spec = job_spec(tmp_path, name, ["/bin/true"])
            group = tree.acquire()
            group.limit(memory_bytes=None, pids_max=None, cpu_slots=0)
            if name == "second":
                del opened[:]
            group.spawn(_box_args(executor.sandbox, spec, ["/bin/true"]), subprocess.Popen).wait(30)
            where.append(_of_thread(threading.get_native_id()))
            wait_for(lambda g=group: not g.pids())  # type: ignore[misc]
            tree.release(group)
        return homes.tasks(), where, list(opened)

    def held_open() -> int:
        """Descriptors of this process on its own groups' ``tasks`` files (other
        threads that started jobs before, in earlier tests, may hold theirs)."""
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found += os.readlink(f"/proc/self/fd/{fd}") in homes.tasks().values()
        return found

    before = held_open()
    home = _of_thread(threading.get_native_id())
    tasks, where, second = _in_thread(run)
    assert where == [home, home]  # back home after each start
    assert not set(tasks.values()) & set(second)  # the second start opened none of them
    monkeypatch.undo()
    wait_for(lambda: held_open() == before)  # the thread's closed once it ended
