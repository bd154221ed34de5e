"""Attempts reuse the node's cgroups: one attempt's limits and counters do not leak into
the next one that runs in the same group. Real sandboxed processes through the
executor the dispatcher uses, in the host's cgroup v1 hierarchy."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobyard.executors.cgroups import CgroupTree
from jobyard.executors.sandbox import SandboxedExecutor, SandboxHandle, detect
from tests.conftest import wait_for
from tests.support.sandbox import job_spec, require_sandbox

MB = 1024 * 1024
PY = sys.executable
HOG = "x = bytearray(200 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096])"


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[SandboxedExecutor]:
    require_sandbox()
    os.chmod(tmp_path, 0o755)
    box, support = detect(node_id="pool-test", data_dir=tmp_path / "data", pids_max=64)
    if box is None or box.cgroups is None:
        pytest.skip(f"no cgroups for jobs here: {support.reason or support.limits_reason}")
    ex = SandboxedExecutor(box)
    yield ex
    ex.sweep()
    ex.close()


def _start(
    ex: SandboxedExecutor, root: Path, name: str, argv: list[str], **kw: int
) -> SandboxHandle:
    return ex.start(job_spec(root, name, argv, **kw))


def _run(ex: SandboxedExecutor, root: Path, name: str, argv: list[str], **kw: int) -> SandboxHandle:
    handle = _start(ex, root, name, argv, **kw)
    handle.wait(30)
    handle.cleanup()
    # bwrap's own processes may still be exiting: the group is reused once they are gone
    group = handle.group
    assert group is not None
    wait_for(lambda: not group.pids())
    return handle


def _tree(ex: SandboxedExecutor) -> CgroupTree:
    assert ex.sandbox.cgroups is not None
    return ex.sandbox.cgroups


def _groups(tree: CgroupTree) -> list[str]:
    return sorted(p.name for p in tree.roots["pids"].iterdir() if p.is_dir())


def _group_of(handle: SandboxHandle) -> str:
    assert handle.group is not None
    return handle.group.name


def test_attempts_one_after_the_other_reuse_one_group(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    used = set()
    for n in range(3):
        handle = _run(executor, tmp_path, f"j{n}", ["/bin/true"], cpu_slots=1)
        assert handle.wait(0) == 0
        used.add(_group_of(handle))
    assert used == {"g1"}
    assert _groups(_tree(executor)) == ["g1"]


def test_an_oom_kill_and_the_peak_belong_to_their_attempt_only(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    hog = _run(executor, tmp_path, "hog", [PY, "-c", HOG], memory_limit_bytes=64 * MB)
    assert hog.oom_killed()
    peak = hog.sample().peak_rss_bytes
    assert peak is not None and peak >= 60 * MB
    # the next attempt in the same group: a higher limit (memory+swap raised first), no
    # OOM kill of its own, its own peak
    small = _run(executor, tmp_path, "small", [PY, "-c", "pass"], memory_limit_bytes=512 * MB)
    assert small.wait(0) == 0, (tmp_path / "small" / "log").read_text()
    assert not small.oom_killed()
    assert (small.sample().peak_rss_bytes or 0) < 60 * MB
    assert _group_of(small) == _group_of(hog)
    limit = _tree(executor).roots["memory"] / _group_of(hog) / "memory.limit_in_bytes"
    assert int(limit.read_text()) == 512 * MB
    # and without a limit: unlimited again
    free = _run(executor, tmp_path, "free", ["/bin/true"])
    assert _group_of(free) == _group_of(hog)
    assert int(limit.read_text()) > 1 << 50


def test_failed_forks_are_counted_for_their_attempt_only(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    bomb = "for i in $(seq 100); do sleep 5 & done; wait"
    first = _run(executor, tmp_path, "bomb", ["/bin/sh", "-c", bomb])
    assert first.pids_exhausted() == 64
    second = _run(executor, tmp_path, "calm", ["/bin/true"])
    assert _group_of(second) == _group_of(first)
    assert second.pids_exhausted() is None


def test_a_group_left_holding_page_cache_is_not_reused(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    write = "head -c 33554432 /dev/zero > big"  # 32 MiB of page cache charged to the group
    writer = _run(executor, tmp_path, "writer", ["/bin/sh", "-c", write])
    assert (tmp_path / "writer" / "work" / "big").stat().st_size == 32 * MB
    after = _run(executor, tmp_path, "next", ["/bin/true"])
    assert _group_of(after) != _group_of(writer), "the group charged with 32 MiB was reused"
    assert _group_of(writer) not in _groups(_tree(executor)), "it was not removed either"


def test_a_group_goes_back_to_the_pool_only_after_its_attempts_kill(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    # A forced stop kills the sandbox, then every process left in its group. Its process
    # may be reaped, and the attempt finished, before that kill is over: the group must
    # not go back to the pool meanwhile, or the kill would hit the next attempt in it
    # (a job claimed again at once after its lease was lost died of SIGKILL that way).
    first = _start(executor, tmp_path, "first", [PY, "-c", "import time; time.sleep(60)"])
    group = first.group
    assert group is not None
    real_kill_all = group.kill_all
    killing, go = threading.Event(), threading.Event()

    def held_kill_all() -> bool:
        killing.set()
        go.wait(30)
        return real_kill_all()

    group.kill_all = held_kill_all  # type: ignore[method-assign]
    stopper = threading.Thread(target=first.stop, args=(0.0,), kwargs={"force": True})
    stopper.start()
    assert killing.wait(30)
    assert first.wait(30) is not None  # the sandbox is gone, its group's kill is not over
    cleaner = threading.Thread(target=first.cleanup)
    cleaner.start()
    cleaner.join(0.5)
    assert cleaner.is_alive(), "the group was given back while its kill was still running"
    second = _start(executor, tmp_path, "second", [PY, "-c", "import time; time.sleep(60)"])
    assert _group_of(second) != group.name
    go.set()
    stopper.join(30)
    cleaner.join(30)
    assert not cleaner.is_alive()
    assert second.wait(0) is None, "the next attempt was killed by the previous one's stop"
    second.stop(0.0, force=True)
    second.cleanup()


def _groups_of(pid: int) -> dict[str, str]:
    """The v1 group of process ``pid`` in each controller (``/proc/<pid>/cgroup``)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            found[name] = path
    return found


def test_every_process_of_a_job_is_in_its_groups_from_the_start(
    executor: SandboxedExecutor, tmp_path: Path
) -> None:
    # The first process joins the groups before it execs bubblewrap: every process of
    # the sandbox (bwrap's two, the job, what it forks at once) is in all four of them.
    # A process moved after it forked would have left its children behind.
    job = _start(executor, tmp_path, "tree", ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])
    group = job.group
    assert group is not None
    root = psutil.Process(job.pid)
    wait_for(lambda: sum(p.name() == "sleep" for p in root.children(recursive=True)) == 2)
    tree = [job.pid, *(p.pid for p in root.children(recursive=True))]
    assert len(tree) >= 5  # bwrap, its PID 1, the shell, two sleeps
    for pid in tree:
        groups = _groups_of(pid)
        for controller, directory in group.dirs.items():
            path = groups[controller]
            assert path.endswith(f"/{group.name}") and str(directory).endswith(path), (
                pid,
                controller,
                path,
            )
    assert sorted(group.pids()) == sorted(tree)
    assert os.getpid() not in group.pids()  # the server's own process never joins
    job.stop(0.0, force=True)
    job.cleanup()
