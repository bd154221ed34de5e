"""What a parked sandbox saves: the executor's ``start()`` of ``<python> -c "import time;
print(time.time())"`` in the spare job directory, started cold and started in a sandbox
parked there beforehand (``SandboxedExecutor.park``), one at a time, interleaved, with
a pause between (an idle slot). Per start: from just before ``start()`` to the job's
own timestamp, beyond the interpreter's own start (measured alone the same way); and
the CPU of the processes of one start, parking included (the node's cgroups'
``cpuacct.usage``: the chain once it joined its group, and the job; plus
``RUSAGE_CHILDREN``: what ran before, bwrap's monitor keeps the rest), of the
calling thread (``start()``, a warm one's renames and message), and of the whole
server process from before the park to ``start()``'s return (its threads: the park's
spawn, the move of the job's directory; the spare's rename and ``start()``). Needs root, bubblewrap
and the cgroup v1 controllers.

    .venv/bin/python bench/parked_start.py [--runs 40] [--pause-ms 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average, machine_line

from jobyard.executors.base import LaunchSpec, Parking
from jobyard.executors.sandbox import SandboxedExecutor, detect, unavailable
from jobyard.storage.workspace import Workspace

STAMP = "import time; print(time.time())"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(executor: SandboxedExecutor) -> float:
    """CPU seconds of every process in the node's cgroups so far (``cpuacct.usage``)."""
    tree = executor.sandbox.cgroups
    assert tree is not None
    return int((tree.roots["cpuacct"] / "cpuacct.usage").read_text()) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="starts of each variant")
    ap.add_argument("--pause-ms", type=float, default=50.0, help="idle time before each")
    args = ap.parse_args()
    print(machine_line())
    if unavailable():
        sys.exit(f"no sandbox here: {unavailable()}")
    home = Path(tempfile.mkdtemp(prefix="jobyard-parked-"))
    home.chmod(0o755)
    data = home / "data"
    box, support = detect(node_id="bench-parked", data_dir=data, pids_max=1024)
    if box is None or not getattr(box, "parks", getattr(box, "parking_tools", None)):
        sys.exit(f"no parked sandboxes here: {support.reason or support.limits_reason}")
    executor = SandboxedExecutor(box)
    workspace = Workspace(data)
    job = (sys.executable, "-c", STAMP)
    figures: dict[str, list[tuple[float, float, float, float]]] = {"cold": [], "parked": []}
    alone: list[float] = []
    try:
        for n in range(args.runs):
            for kind in ("cold", "parked") if n % 2 else ("parked", "cold"):
                time.sleep(args.pause_ms / 1000)
                figures[kind].append(_one(executor, workspace, job, f"{kind}-{n}", kind))
            time.sleep(args.pause_ms / 1000)
            before = time.time()
            out = subprocess.run(job, capture_output=True, text=True, check=True).stdout
            alone.append(float(out) - before)
    finally:
        executor.close()
    own = statistics.median(alone)
    print(f"interpreter alone: {own * 1000:.2f} ms (p50 of {len(alone)})")
    for kind, rows in figures.items():
        wall = statistics.median(r[0] for r in rows) - own
        chain = statistics.median(r[1] for r in rows)
        thread = statistics.median(r[2] for r in rows)
        server = statistics.median(r[3] for r in rows)
        print(
            f"{kind:7s}: start() → the job's stamp beyond the interpreter p50"
            f" {wall * 1000:+.2f} ms; CPU of its processes {chain * 1000:.2f} ms,"
            f" of start() {thread * 1000:.2f} ms, of the server {server * 1000:.2f} ms"
        )
    print(f"load average at the end: {load_average()}")


def _one(
    executor: SandboxedExecutor, workspace: Workspace, job: tuple[str, ...], job_id: str, kind: str
) -> tuple[float, float, float]:
    """(seconds to the job's stamp, CPU of the processes, of the calling thread, of the
    server's threads)."""
    workspace.make_spare()
    work = workspace.spare_workdir()
    assert work is not None
    cpu0 = _children_cpu() + _tree_cpu(executor)
    server0 = time.process_time()
    if kind == "parked":
        logs = work.parent / "logs"
        executor.park(
            Parking(
                workdir=work,
                log_path=logs / ".parked.log",
                status_path=logs / ".parked.exit",
                user=None,
                renames=workspace.spare_renames,
            )
        )
        parked = executor._parker._parked
        assert parked is not None
        parked.started.result()
        time.sleep(0.03)  # parked: waiting for its job
    assert workspace.take_spare(job_id)
    workdir = workspace.workdir(job_id)
    os.chown(workdir, 65534, 65534)
    spec = LaunchSpec(
        job_id=job_id,
        attempt=1,
        entrypoint=None,
        argv=job,
        workdir=workdir,
        log_path=workspace.log_path(job_id, 1),
        status_path=workspace.exit_status_path(job_id, 1),
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir)},
        cpu_slots=1,
    )
    thread0 = time.thread_time()
    before = time.time()
    handle = executor.start(spec)
    thread = time.thread_time() - thread0
    server = time.process_time() - server0
    assert handle.parked == (kind == "parked"), kind
    code = handle.wait(60)
    handle.cleanup()
    assert code == 0, spec.log_path.read_text()
    stamp = float(spec.log_path.read_text().split()[0])
    return stamp - before, _children_cpu() + _tree_cpu(executor) - cpu0, thread, server


if __name__ == "__main__":
    main()
