"""The entrypoint of a jobyard attempt on a Ray worker (``python3 -m
jobyard.executors.raywrap``, run by Ray's job supervisor in the job's ``working_dir``).

It copies the package Ray unpacked (shared by every job with the same content) into a
private directory of its own, puts the job's paths and Python in place of the jobyard
host's, runs the job there (in jobyard's bubblewrap sandbox when the worker runs as root
and has bubblewrap, else as a plain child process), and afterwards sends the files of the
job's ``output/`` directory back through the log, framed by lines that carry the
attempt's nonce (the executor on the jobyard host takes them out of the log). Its exit
code is the job's (a job killed by signal N: this process ends by signal N too).

Ray's stop sends SIGTERM to this process and to every process below it. bubblewrap's
processes ignore it (started with SIGTERM ignored, which stays so across ``exec``); the
job itself is started through ``env --default-signal=TERM`` (inside the sandbox; without
it, SIGTERM's default is restored in the child before ``exec``), so the job gets the
grace Ray gives (``RAY_JOB_STOP_WAIT_TIME_S``, set per job by the executor) before Ray's
SIGKILL, which also ends this process, and with it the job (the sandbox's
``--die-with-parent``, else the job's parent-death signal).

Ray's Jobs API has no immediate kill: for a forced stop the executor puts a marker
package named after the attempt's nonce into Ray's package store (:func:`kill_package`)
before it stops the job; on SIGTERM this process looks for it during the grace and kills
the job at once when it is there.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

LAUNCH_DIR = ".jobyard-ray"  #: in the package: the launch file, never copied to the job
LAUNCH_FILE = "launch.json"
FRAME = "@@jobyard-ray"  #: output lines: ``@@jobyard-ray:<nonce>:out:<base64>``, then ``:end``
CHUNK = 48 * 1024  #: bytes of the output archive per framed line (before base64)
PRIVATE_PREFIX = "jobyard-ray-"  #: the attempts' private directories in the worker's tmp
OWNER_FILE = "owner"  #: in a private directory: ``<pid> <start time>`` of its wrapper


def kill_package(nonce: str) -> str:
    """The name of the marker package that asks for a forced stop of the attempt."""
    return f"_jobyard_kill_{nonce}.zip"


def kill_requested(address: str, nonce: str) -> bool:
    """Whether the executor asked for a forced stop (its marker package exists)."""
    url = f"{address}/api/packages/gcs/{kill_package(nonce)}"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:  # noqa: S310 - the cluster's URL
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def watch_forced_stop(proc: subprocess.Popen[bytes], launch: dict[str, Any]) -> None:
    """After Ray's SIGTERM: kill the job at once if the stop is a forced one."""
    address, nonce = str(launch.get("ray_address") or ""), str(launch["nonce"])
    deadline = time.monotonic() + float(launch.get("grace_s", 10.0))
    while address and proc.poll() is None and time.monotonic() < deadline:
        if kill_requested(address, nonce):
            print("jobyard: forced stop: the job is killed at once", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        with contextlib.suppress(subprocess.TimeoutExpired):  # the job's exit ends it early
            proc.wait(0.2)  # between two remote checks


def rewrite_env(
    env: dict[str, str], launch: dict[str, Any], work: Path, jobyard_root: Path
) -> dict[str, str]:
    """The job's environment with the host's paths replaced by this worker's: its
    working directory, its Python, and jobyard's in-job helper on ``PYTHONPATH``."""
    host_work = launch["host_workdir"]
    out = {k: v.replace(host_work, str(work)) for k, v in env.items()}
    out["JOBYARD_PYTHON"] = sys.executable
    host_pylib = launch.get("host_pylib") or ""
    parts = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != host_pylib]
    out["PYTHONPATH"] = os.pathsep.join([str(jobyard_root), *parts])
    return out


def command(launch: dict[str, Any]) -> list[str]:
    argv = launch.get("argv")
    if argv:
        args = [str(a) for a in argv]
        if args[0] == launch["host_python"]:
            args[0] = sys.executable
        return args
    return ["/bin/sh", "-c", str(launch["entrypoint"])]


def send_outputs(output: Path, nonce: str, limit: int) -> None:
    """Print the output directory as a zip archive in framed base64 lines."""
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(output, followlinks=False):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                total += path.stat().st_size
                if total > limit:
                    print(f"jobyard: outputs beyond {limit} bytes are not returned", flush=True)
                    break
                zf.write(path, path.relative_to(output).as_posix())
    data = buf.getvalue()
    out = sys.stdout
    out.flush()
    for i in range(0, len(data), CHUNK):
        text = base64.b64encode(data[i : i + CHUNK]).decode("ascii")
        out.write(f"{FRAME}:{nonce}:out:{text}\n")
    out.write(f"{FRAME}:{nonce}:end\n")
    out.flush()


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, ``/proc/<pid>/stat``), None
    when it does not exist: with the pid, it names a process (pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the name


def make_private_dir(tmp: Path) -> Path:
    """A new private directory for this attempt, marked with this process as its owner."""
    root = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=tmp))
    (root / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
    return root


def remove_tree(root: Path) -> None:
    """Remove a private directory, also what the sandboxed job made unwritable in it."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)


def sweep_leftovers(tmp: Path) -> int:
    """Remove the private directories whose wrapper died without removing them (Ray's
    SIGKILL at the end of a stop's grace leaves no time to clean); the number removed.
    Directories of live wrappers, and those not marked yet, stay."""
    removed = 0
    for root in tmp.glob(f"{PRIVATE_PREFIX}*"):
        try:
            pid, started = (root / OWNER_FILE).read_text().split()
            alive = _start_time(int(pid)) == started
        except (OSError, ValueError):
            continue
        if not alive:
            remove_tree(root)
            removed += 1
    return removed


def main() -> int:
    package = Path.cwd()
    launch = json.loads((package / LAUNCH_DIR / LAUNCH_FILE).read_text())
    tmp = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        sweep_leftovers(tmp)
    root = make_private_dir(tmp)
    work = root / "work"
    shutil.copytree(package, work, symlinks=True, ignore=shutil.ignore_patterns(LAUNCH_DIR))
    import jobyard

    env = rewrite_env(launch["env"], launch, work, Path(jobyard.__file__).resolve().parent.parent)
    job = command(launch)
    null = os.open(os.devnull, os.O_WRONLY)  # bwrap's status: the job's code is enough
    args = job
    if launch.get("sandbox", True):
        from jobyard.executors import sandbox

        if not sandbox.unavailable():
            args = sandbox.isolate(
                job, work, env, network=bool(launch.get("network", True)), status_fd=null
            )
    boxed = args != job
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited: only the job itself gets it
    try:
        proc = subprocess.Popen(  # noqa: S603 - the job's own command
            args,
            cwd=work,
            env=sandbox.chain_env(env) if boxed else env,  # the loader's: the job's only
            stdin=subprocess.DEVNULL,
            pass_fds=(null,),
            start_new_session=True,
            preexec_fn=None if boxed else _as_job,
        )
    except OSError as e:
        print(f"jobyard: cannot start {args[0]!r}: {e}", flush=True)
        return 127

    def stopping(*_: object) -> None:
        threading.Thread(target=watch_forced_stop, args=(proc, launch), daemon=True).start()

    signal.signal(signal.SIGTERM, stopping)
    code = proc.wait()
    if boxed and 128 < code < 128 + signal.NSIG:
        code = -(code - 128)  # bwrap reports a signal as 128 + N, as shells do
    try:
        send_outputs(work / "output", str(launch["nonce"]), int(launch["max_output_bytes"]))
    finally:
        remove_tree(root)
    return code


def _as_job() -> None:
    """In the unsandboxed job's child before ``exec``: SIGTERM's default action back, and
    killed when this wrapper dies."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


if __name__ == "__main__":
    exit_code = main()
    if exit_code < 0:  # end as the job did: by its signal
        signal.signal(-exit_code, signal.SIG_DFL)
        os.kill(os.getpid(), -exit_code)
    sys.exit(exit_code)
