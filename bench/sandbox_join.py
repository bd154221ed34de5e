"""What joining a job's cgroups adds to a sandboxed start: ``<python> -c "import time;
print(time.time())"`` in jobyard's bubblewrap command, one start at a time with a pause
between (an idle slot), from just before ``Popen`` to the job's own timestamp. The
variants run interleaved: the interpreter alone, the sandbox without cgroups, with a
shell in front that joins nothing, that writes its pid to the four groups'
``cgroup.procs`` (jobyard before ``d16c94b``), that writes ``0`` to their ``tasks``
(jobyard before ``JobCgroup.spawn``), the same with ``setpriv`` given the job's uid and
gid as numbers (jobyard before ``4b70a49``; now their names, found in ``/etc/passwd``),
and no shell: the starting thread joins the groups around ``Popen`` (jobyard now; the
starts run in a thread of their own, since the main thread never joins). Needs root,
bubblewrap and the cgroup v1 controllers.

    .venv/bin/python bench/sandbox_join.py [--runs 30] [--pause-ms 20]
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import load_average, machine_line

from jobyard.executors.base import LaunchSpec
from jobyard.executors.cgroups import JobCgroup
from jobyard.executors.sandbox import detect, unavailable
from jobyard.executors.support import DEFAULT_USER

STAMP = "import time; print(time.time())"


def _shell(joins: str, args: list[str]) -> list[str]:
    return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *args]


def _by_id(args: list[str]) -> list[str]:
    """``args`` with setpriv's user and group given as numbers."""
    user = pwd.getpwnam(DEFAULT_USER)
    group = grp.getgrgid(user.pw_gid).gr_name
    ids = {f"--reuid={user.pw_name}": f"--reuid={user.pw_uid}"}
    ids[f"--regid={group}"] = f"--regid={user.pw_gid}"
    return [ids.get(a, a) for a in args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="starts of each variant")
    ap.add_argument("--pause-ms", type=float, default=20.0, help="idle time before each")
    args = ap.parse_args()
    print(machine_line())
    if unavailable():
        sys.exit(f"no sandbox here: {unavailable()}")
    data = Path(tempfile.mkdtemp(prefix="jobyard-join-"))
    data.chmod(0o755)
    box, support = detect(node_id="bench-join", data_dir=data / "data", pids_max=None)
    if box is None or box.cgroups is None:
        sys.exit(f"no cgroups for jobs here: {support.reason or support.limits_reason}")
    tree = box.cgroups
    work = data / "work"
    work.mkdir()
    work.chmod(0o777)  # the job's user may write there
    job = [sys.executable, "-c", STAMP]
    spec = LaunchSpec(
        env={"PATH": "/usr/bin:/bin"},
        argv=tuple(job),
        workdir=work,
        log_path=data / "log",
        job_id="j",
        attempt=1,
        entrypoint=None,
        cpu_slots=1,
    )
    status_fd = os.open(os.devnull, os.O_WRONLY)  # bubblewrap's JSON status goes nowhere
    bare = box.command(spec, job, status_fd=status_fd)
    variants: dict[str, Callable[[JobCgroup], list[str]]] = {
        "python alone": lambda _g: job,
        "sandbox, no cgroups": lambda _g: bare,
        "sh in front, no join": lambda _g: _shell("true", bare),
        "sh: its pid to cgroup.procs": lambda g: _shell(
            " && ".join(f"echo $$ > {f}" for f in g.procs_files()), bare
        ),
        "sh: 0 to tasks": lambda g: g.shell_joined(bare),
        "same, setpriv by id": lambda g: _by_id(g.shell_joined(bare)),
        "no shell: the thread joins": lambda _g: bare,
    }
    took: dict[str, list[float]] = {name: [] for name in variants}

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, cwd=work, pass_fds=(status_fd,), stdout=subprocess.PIPE)

    def runs() -> None:
        for _ in range(args.runs):
            for name, argv in variants.items():
                group = tree.acquire()
                group.limit(memory_bytes=None, pids_max=None, cpu_slots=1)
                try:
                    time.sleep(args.pause_ms / 1000)
                    before = time.time()
                    if name.startswith("no shell"):
                        popen = group.spawn(argv(group), start)
                    else:
                        popen = start(argv(group))
                    out, _ = popen.communicate()
                    assert popen.returncode == 0, name
                    took[name].append((float(out.split()[0]) - before) * 1000)
                finally:
                    tree.release(group)

    try:
        runner = threading.Thread(target=runs)
        runner.start()
        runner.join()
    finally:
        tree.sweep()  # the last group may still hold bwrap's exiting processes
        tree.close()
        shutil.rmtree(data, ignore_errors=True)
    alone = statistics.median(took["python alone"])
    for name, ms in took.items():
        p50 = statistics.median(ms)
        print(f"{name:30} p50 {p50:6.2f} ms  (+{p50 - alone:5.2f} beyond the interpreter)")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
