"""A sandboxed start reads nothing of its process (right after ``Popen`` a read of
``/proc/<pid>/stat`` waits for the child's exec, on the claim loop's thread): the outer
bwrap's create time is read when asked, and always before its exit is reaped, whether
by a wait or by a stop. Real sandboxes, real processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobyard.executors.sandbox import SandboxedExecutor, detect
from tests.conftest import wait_for
from tests.support import procs
from tests.support.sandbox import job_spec, require_sandbox


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[SandboxedExecutor]:
    require_sandbox()
    os.chmod(tmp_path, 0o755)
    box, support = detect(node_id="handle-test", data_dir=tmp_path / "data", pids_max=64)
    if box is None:
        pytest.skip(f"no sandbox here: {support.reason}")
    ex = SandboxedExecutor(box)
    yield ex
    ex.sweep()
    ex.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids whose ``/proc/<pid>/stat`` is read from now on."""
    return procs.spy_reads(monkeypatch)


REAL = psutil.Process


def test_a_start_reads_nothing_of_its_process_until_asked(
    executor: SandboxedExecutor, tmp_path: Path, reads: list[int]
) -> None:
    running = executor.start(job_spec(tmp_path, "sleeps", ["/bin/sleep", "60"]))
    exited = executor.start(job_spec(tmp_path, "exits", ["/bin/true"]))
    assert reads == []

    try:
        assert running.create_time == REAL(running.pid).create_time()  # psutil's
        assert reads == [running.pid]
        assert exited.wait(10) == 0  # reaped: /proc/<pid> is gone now
        assert exited.create_time > 0  # read before the reaping
        assert abs(exited.create_time - running.create_time) < 60
        assert reads.count(exited.pid) == 1
    finally:
        running.stop(0, force=True)
        running.cleanup()
        exited.cleanup()


def test_a_stop_reads_the_process_before_it_reaps_it(
    executor: SandboxedExecutor, tmp_path: Path, reads: list[int]
) -> None:
    handle = executor.start(job_spec(tmp_path, "stopped", ["/bin/sleep", "60"]))
    assert reads == []

    assert handle.stop(0, force=True) == -9
    handle.cleanup()
    with pytest.raises(psutil.NoSuchProcess):
        REAL(handle.pid)  # reaped
    assert handle.create_time > 0  # read before the reaping
    assert reads.count(handle.pid) == 1


def test_a_sample_reads_the_attempts_cgroup_not_every_process_of_the_host(
    executor: SandboxedExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandboxed attempt's sample takes its processes from its cgroup: psutil's walk of
    the descendants, which reads every process on the host, is not called, and the job's
    child (a shell's background process) is counted."""
    # the child says when its 64 MiB are all written (its RSS passes 64 MiB before that:
    # the interpreter's own pages count too)
    script = (
        'python3 -c \'b = b"x" * (64 << 20); open("ready", "w").close();'
        " import time; time.sleep(60)' & wait"
    )
    spec = job_spec(tmp_path, "sampled", ["/bin/sh", "-c", script])
    handle = executor.start(spec)
    big = 64 << 20

    def python() -> psutil.Process | None:
        found = [p for p in handle._processes() if p.name().startswith("python")]
        return found[0] if found else None

    def walk(*_args: object, **_kwargs: object) -> list[psutil.Process]:
        raise AssertionError("sampled by walking the host's processes")

    try:
        assert handle.group is not None
        monkeypatch.setattr(psutil.Process, "children", walk)
        wait_for(lambda: (spec.workdir / "ready").exists())
        child = python()
        assert child is not None
        assert {handle.pid, child.pid} <= {p.pid for p in handle._processes()}
        usage = handle.sample()
        assert usage.rss_bytes is not None and usage.rss_bytes > big
    finally:
        monkeypatch.undo()
        handle.stop(0, force=True)
        handle.cleanup()
