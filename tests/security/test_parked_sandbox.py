"""Parked sandboxes: a job that starts in a sandbox started ahead in the spare job
directory sees exactly what a job started cold sees (its user, groups, capabilities,
no new privileges, working directory, environment, mounts, its own namespaces, none
of the other jobs' directories); a parked sandbox that does not match its job is
discarded and the job starts cold; a parked sandbox serves one job; and nothing of a
parked sandbox outlives the executor's close. Real sandboxes, real processes."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import pytest

from jobyard.executors import sandbox
from jobyard.executors.base import LaunchSpec, Parking
from jobyard.executors.sandbox import SandboxedExecutor, SandboxHandle
from jobyard.storage.exitstatus import read_exit_status
from jobyard.storage.workspace import Workspace
from tests.conftest import wait_for
from tests.support import procs
from tests.support.sandbox import require_sandbox

pytestmark = [pytest.mark.acceptance]

#: what the job reports of itself, one fact per line
SEE = r"""
import json, os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
mounts = sorted(l.split()[4] + " " + l.split()[5].split(",")[0] for l in open("/proc/self/mountinfo"))
jobs = os.path.dirname(os.path.dirname(os.getcwd()))
print(json.dumps({
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
    "status": {k: status[k].split() for k in ("Uid", "Gid", "Groups", "NoNewPrivs",
        "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp")},
    "cwd": os.getcwd(), "real_cwd": os.path.realpath("."),
    "env": dict(os.environ),
    "mounts": mounts,
    "jobs": sorted(os.listdir(jobs)),
    "root": sorted(os.listdir("/")),
    "tmp": [oct(os.stat(p).st_mode) for p in ("/tmp", "/dev/shm")] + os.listdir("/tmp") + os.listdir("/dev/shm"),
    "parents": [oct(os.stat(p).st_mode) for p in (jobs, os.path.dirname(os.getcwd()))],
    "pid": os.getpid(), "ppid": os.getppid(),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "stdin": os.readlink("/proc/self/fd/0"),
    "ns": {n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "ipc", "uts", "mnt", "net", "cgroup")},
    "cgroup": open("/proc/self/cgroup").read(),
    "umask": os.umask(0),
    "input_writable": os.access("input", os.W_OK),
    "listing": sorted(os.listdir(".")),
    "input": sorted(os.listdir("input")),
    "output_writable": os.access("output", os.W_OK),
}))
"""


@dataclass
class Node:
    executor: SandboxedExecutor
    workspace: Workspace
    data: Path

    def spare(self) -> Parking:
        self.workspace.make_spare()
        work = self.workspace.spare_workdir()
        assert work is not None
        logs = work.parent / "logs"
        return Parking(
            workdir=work,
            log_path=logs / ".parked.log",
            status_path=logs / ".parked.exit",
            user=None,
            renames=self.workspace.spare_renames,
        )

    def spec(self, job_id: str, *, spare: bool, **changes: object) -> LaunchSpec:
        """A job's launch spec, its directory taken from the spare or made."""
        if not (spare and self.workspace.take_spare(job_id)):
            for sub in ("work/input", "work/output", "logs"):
                (self.workspace.job_dir(job_id) / sub).mkdir(parents=True)
        work = self.workspace.workdir(job_id)
        os.chown(work, 65534, 65534)
        os.chown(work / "output", 65534, 65534)
        (work / "input" / "data.txt").write_text("input")
        spec = LaunchSpec(
            job_id=job_id,
            attempt=1,
            entrypoint=None,
            argv=(sys.executable, "-c", SEE),
            workdir=work,
            log_path=self.workspace.log_path(job_id, 1),
            status_path=self.workspace.exit_status_path(job_id, 1),
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
                "JOBYARD_JOB_ID": job_id,
                "JOBYARD_PARAMETERS": '{"a": "it\'s \\n $HOME `x`"}',
                "MULTI": "line one\nline two",
            },
            cpu_slots=1,
        )
        return replace(spec, **changes)  # type: ignore[arg-type]

    def run(self, spec: LaunchSpec) -> tuple[SandboxHandle, dict[str, object]]:
        import json

        handle = self.executor.start(spec)
        code = handle.wait(60)
        handle.cleanup()
        assert code == 0, spec.log_path.read_text()
        status = read_exit_status(spec.status_path or Path())
        assert status is not None and status.code == 0
        return handle, json.loads(spec.log_path.read_text())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    require_sandbox()
    tmp_path.chmod(0o755)
    data = tmp_path / "data"
    box, support = sandbox.detect(node_id="parked", data_dir=data, pids_max=200)
    assert box is not None, support.reason
    assert box.parks, "this host parks no sandboxes"
    executor = SandboxedExecutor(box)
    yield Node(executor, Workspace(data), data)
    executor.close()


def _same(view: dict[str, object], job_id: str) -> dict[str, object]:
    """The view with the job's own id written as ``JOB`` (namespaces as kinds), its
    environment in name order (a cold start's is the server's order, a parked one's the
    order its shell exports it in)."""
    text = repr(
        {
            k: dict(sorted(v.items())) if k == "env" and isinstance(v, dict) else v
            for k, v in view.items()
            if k not in ("ns", "cgroup")
        }
    )
    return {"view": text.replace(job_id, "JOB")}


def test_a_job_started_in_a_parked_sandbox_sees_what_a_cold_started_job_sees(
    node: Node,
) -> None:
    cold_handle, cold = node.run(node.spec("cold-job", spare=False))
    assert not cold_handle.parked
    node.executor.park(node.spare())
    warm_handle, warm = node.run(node.spec("warm-job", spare=True))
    assert warm_handle.parked
    assert _same(warm, "warm-job") == _same(cold, "cold-job")
    assert warm["ids"] == [65534, 65534, 65534, 65534, []]
    status = warm["status"]
    assert isinstance(status, dict)
    assert status["NoNewPrivs"] == ["1"]
    assert all(status[c] == ["0000000000000000"] for c in ("CapInh", "CapPrm", "CapEff", "CapBnd"))
    assert warm["jobs"] == ["warm-job"]  # no other job's directory, no spare
    assert warm["pid"] == 2 and warm["ppid"] == 1
    assert warm["input_writable"] is False and warm["output_writable"] is True
    env = warm["env"]
    assert isinstance(env, dict)
    assert env["MULTI"] == "line one\nline two"
    assert env["PWD"] == str(node.workspace.workdir("warm-job"))
    ns = warm["ns"]
    assert isinstance(ns, dict) and isinstance(cold["ns"], dict)
    for kind in ("pid", "ipc", "uts", "mnt", "cgroup"):  # its own, not the host's
        assert ns[kind] != os.readlink(f"/proc/self/ns/{kind}")
    assert ns["net"] == os.readlink("/proc/self/ns/net")  # network: the host's, as cold
    assert warm["cgroup"] == cold["cgroup"]  # a group of its own, its namespace's root
    logs = node.workspace.job_dir("warm-job") / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["attempt-1.exit", "attempt-1.log"]


def test_a_parked_sandbox_that_does_not_match_its_job_is_discarded(node: Node) -> None:
    node.executor.park(node.spare())
    parked = node.executor._parker._parked
    assert parked is not None
    parked.started.result()
    assert parked.popen is not None
    pid = parked.popen.pid
    # network none: the parked sandbox shares the host's network; the job starts cold
    handle, view = node.run(node.spec("no-net", spare=True, network=False))
    assert not handle.parked
    ns = view["ns"]
    assert isinstance(ns, dict) and ns["net"] != os.readlink("/proc/self/ns/net")
    wait_for(lambda: procs.gone([pid]))
    logs = node.workspace.job_dir("no-net") / "logs"
    wait_for(lambda: sorted(p.name for p in logs.iterdir()) == ["attempt-1.exit", "attempt-1.log"])
    # another user, or an environment the shell would not pass on as given: cold too
    node.executor.park(node.spare())
    handle, _ = node.run(node.spec("other-user", spare=True, user="daemon"))
    assert not handle.parked
    node.executor.park(node.spare())
    env = {**node.spec("x", spare=False).env, "odd.name": "1"}
    handle, _ = node.run(node.spec("odd-env", spare=True, env=env))
    assert not handle.parked


def test_a_parked_sandbox_waits_for_the_job_that_takes_its_directory_and_serves_one(
    node: Node,
) -> None:
    node.executor.park(node.spare())
    handle, _ = node.run(node.spec("retry", spare=False))  # a directory of its own
    assert not handle.parked
    handle, _ = node.run(node.spec("takes-it", spare=True))
    assert handle.parked
    handle, _ = node.run(node.spec("next", spare=True))  # the spare is gone: its own
    assert not handle.parked
    node.executor.park(node.spare())
    node.executor.park(node.spare())  # one at most: the same one stays
    first = node.executor._parker._parked
    node.executor.park(node.spare())
    assert node.executor._parker._parked is first


def test_nothing_of_a_parked_sandbox_outlives_the_executors_close(node: Node) -> None:
    node.executor.park(node.spare())
    parked = node.executor._parker._parked
    assert parked is not None
    parked.started.result()
    assert parked.popen is not None and parked.group is not None
    pid = parked.popen.pid
    chain = wait_for(lambda: len(procs.tree(pid)) >= 3 and procs.tree(pid))
    tree = node.executor.sandbox.cgroups
    assert tree is not None
    node.executor.close()
    assert procs.gone(chain)
    assert not any(root.exists() for root in tree.roots.values())
    assert str(node.data) not in Path("/proc/self/mountinfo").read_text()
    spare = node.workspace.spare_workdir()
    assert spare is not None and sorted(p.name for p in (spare.parent / "logs").iterdir()) == []
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if "/.jobyard-go" in " ".join(p.info["cmdline"] or [])
    ]


def test_taking_the_spare_waits_until_its_parked_sandbox_has_mounted_it(
    node: Node,
) -> None:
    """bwrap mounts by path: the spare is renamed to the job's name only once it is
    mounted, so the sandbox holds the job's directory, not what is at the old path."""
    gate = threading.Event()
    node.executor._spawner.submit(gate.wait, 30)  # the sandbox's processes wait for it
    node.executor.park(node.spare())
    specs: list[LaunchSpec] = []
    taker = threading.Thread(target=lambda: specs.append(node.spec("renamed", spare=True)))
    taker.start()  # waits for the mount
    gate.set()
    taker.join()
    node.workspace.make_spare()  # a new, empty spare at the old path
    (node.workspace.root / ".spare" / "work" / "decoy").write_text("not this one")
    handle, view = node.run(specs[0])
    assert handle.parked
    assert view["cwd"] == str(specs[0].workdir)
    assert view["listing"] == ["input", "output"]  # its own directory, not the new spare
    assert view["input"] == ["data.txt"]


def test_the_loaders_variables_of_a_job_reach_its_own_process_only(node: Node) -> None:
    """A job's ``LD_PRELOAD`` (a library in its own directory, say) is loaded by the
    job's process alone, never by the chain's processes that run as root."""
    for job_id, spare in (("cold-ld", False), ("warm-ld", True)):
        if spare:
            node.executor.park(node.spare())
        spec = node.spec(job_id, spare=spare)
        env = {**spec.env, "LD_PRELOAD": "./no-such-library.so", "LD_LIBRARY_PATH": "lib"}
        handle = node.executor.start(replace(spec, env=env, argv=("/usr/bin/printenv",)))
        assert handle.wait(60) == 0
        handle.cleanup()
        assert handle.parked == spare
        log = spec.log_path.read_text()
        assert log.count("no-such-library.so") == 2, log  # the loader's warning, the variable
        assert "LD_LIBRARY_PATH=lib" in log


def test_a_parked_sandbox_runs_no_process_with_privileges_but_bwraps_own(node: Node) -> None:
    """While it waits, a parked sandbox holds bwrap's two processes and the job's
    process, already the job's user without capabilities: no root shell or helper."""
    node.executor.park(node.spare())
    parked = node.executor._parker._parked
    assert parked is not None
    parked.started.result()
    assert parked.popen is not None
    chain = procs.tree(parked.popen.pid)
    bwraps = [p for p in chain if psutil.Process(p).name() == "bwrap"]
    assert len(bwraps) == 2
    others = [p for p in chain if p not in bwraps]
    assert len(others) == 1
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{others[0]}/status").read_text().splitlines()
    )
    assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4
    assert status["NoNewPrivs"].strip() == "1"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[caps].strip() == "0000000000000000"
    handle, view = node.run(node.spec("after-it", spare=True))
    assert handle.parked and view["ids"] == [65534, 65534, 65534, 65534, []]


def test_a_parked_sandbox_whose_directory_cannot_be_moved_is_discarded(node: Node) -> None:
    """The move to the job's path fails (a file where the job's directory would be, in
    the sandbox): the parked sandbox ends, the job starts cold and runs."""
    node.executor.park(node.spare())
    parked = node.executor._parker._parked
    assert parked is not None
    parked.started.result()
    assert parked.popen is not None
    pid = parked.popen.pid
    pid1 = procs.tree(pid)[1]
    jobs = f"/proc/{pid1}/root{node.workspace.root}"
    Path(jobs, "in-the-way").write_text("a file, not a directory")
    handle, view = node.run(node.spec("in-the-way", spare=True))
    assert not handle.parked
    assert view["cwd"] == str(node.workspace.workdir("in-the-way"))
    wait_for(lambda: procs.gone([pid]))
    logs = node.workspace.job_dir("in-the-way") / "logs"
    wait_for(lambda: sorted(p.name for p in logs.iterdir()) == ["attempt-1.exit", "attempt-1.log"])


def test_no_thread_of_the_server_stays_in_a_parked_sandboxs_mount_namespace(
    node: Node,
) -> None:
    """The move enters the sandbox's mount namespace from a thread of its own, which
    returns to the server's namespace and root."""
    for n in range(3):
        node.executor.park(node.spare())
        handle, _ = node.run(node.spec(f"warm-{n}", spare=True))
        assert handle.parked
    own = os.readlink("/proc/self/ns/mnt")
    seen = {}
    for task in Path("/proc/self/task").iterdir():
        # a thread that ends between the listing and the reads (an earlier test's pool
        # thread) is left out; the mover thread lives on, so it is always read
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            seen[task.name] = (
                os.readlink(task / "ns" / "mnt"),
                os.readlink(task / "root"),
                os.stat(task / "root").st_ino,
            )
    assert len(seen) > 1
    root = os.stat("/").st_ino
    assert all(found == (own, "/", root) for found in seen.values()), seen
