"""Jobs in the sandbox, tried as an attacker would: a member of a second tenant submits
jobs to a real ``jobyard serve`` process and tries to read the server's keys and
database, other tenants' files, the server's environment and its processes, to steal
another job's token, to write outside its directory, to kill the server, to outlive a
cancel, to fork and allocate without bound. Every attempt must fail, and the server
must stay unharmed."""

from __future__ import annotations

import json
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from jobyard.executors.cgroups import CgroupTree
from tests.acceptance.serverproc import (  # noqa: F401
    JOBYARD,
    Server,
    StartServer,
    _clean_env,
    start_server,
)
from tests.conftest import wait_for
from tests.support import procs
from tests.support.sandbox import require_sandbox

pytestmark = [pytest.mark.acceptance]

PY = sys.executable
ENDED = {"succeeded", "failed", "cancelled", "timed_out"}
SECRET = "ALPHA-SECRET-7f3a91"

ATTACK = r"""
import json, os, signal, urllib.request
t = json.loads(os.environ["TARGETS"])
me = os.environ["JOBYARD_JOB_ID"]
results = {}

def attempt(name, action):
    try:
        results[name] = "SUCCEEDED: " + repr(action())[:300]
    except Exception as e:
        results[name] = f"blocked ({type(e).__name__}: {str(e)[:100]})"

def others():
    found = [d for d in os.listdir(t["jobs_dir"]) if d != me]
    if not found:
        raise LookupError("only its own job directory")
    return found

def steal_token():
    mine = os.environ["JOBYARD_JOB_TOKEN"]
    stolen = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"JOBYARD_JOB_TOKEN=") and item[18:].decode() != mine:
                stolen.append(item[18:].decode())
    if not stolen:
        raise LookupError("no other job's token is visible")
    victim = stolen[0].split("_")[1]
    body = json.dumps({"type": "progress", "percent": 66, "stage": "hijacked"}).encode()
    req = urllib.request.Request(
        f"{os.environ['JOBYARD_API_URL']}/v1/jobs/{victim}/report", data=body, method="POST",
        headers={"Authorization": "Bearer " + stolen[0], "Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=5).status

def servers_processes():
    mine = {"1", str(os.getpid()), str(os.getppid())}
    seen = [p for p in filter(str.isdigit, os.listdir("/proc")) if p not in mine]
    names = [open(f"/proc/{p}/cmdline", "rb").read() for p in seen]
    hits = [n for n in names if b"jobyard" in n and b"serve" in n]
    if not hits:
        raise LookupError(f"no server process among {len(seen)} visible")
    return hits

attempt("read credentials.json", lambda: open(t["credentials"]).read())
attempt("read the database file", lambda: open(t["database"], "rb").read(64))
attempt("see other jobs' directories", others)
attempt("read another tenant's log", lambda: open(t["victim_log"]).read())
attempt("read another tenant's output", lambda: open(t["victim_output"]).read())
attempt("read the server's environment", lambda: open(f"/proc/{t['server_pid']}/environ", "rb").read())
attempt("see the server's processes", servers_processes)
attempt("steal another job's token", steal_token)
attempt("write into the data directory", lambda: open(t["data_dir"] + "/pwned", "w").write("x"))
attempt("write into /usr", lambda: open("/usr/pwned", "w").write("x"))
attempt("write into /etc", lambda: open("/etc/pwned", "w").write("x"))
attempt("kill the server", lambda: os.kill(t["server_pid"], signal.SIGKILL))
attempt("write its own directory", lambda: open("mine.txt", "w").write("ok"))
print("ATTACK " + json.dumps(results), flush=True)
"""

VICTIM = f"""
import os, time
os.makedirs("output", exist_ok=True)
open("output/secret.txt", "w").write("{SECRET}")
print("{SECRET}", flush=True)
open("ready", "w").write("1")
time.sleep(120)
"""


@dataclass
class World:
    server: Server
    root: str  #: the superuser key of credentials.json (tenant A: default)
    member_b: str  #: a member key of tenant B

    def call(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=15,
            **kw,
        )

    def submit(self, key: str, **body: Any) -> dict[str, Any]:
        r = self.call("POST", "/v1/jobs", key, json=body)
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    def job(self, key: str, job_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/v1/jobs/{job_id}", key)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    def wait(self, key: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
        done: dict[str, Any] = wait_for(
            lambda: (j := self.job(key, job_id))["status"] in ENDED and j, timeout=timeout
        )
        return done

    def log(self, key: str, job_id: str) -> str:
        return self.call("GET", f"/v1/jobs/{job_id}/logs", key).text


@pytest.fixture
def world(start_server: StartServer) -> Iterator[World]:  # noqa: F811
    require_sandbox()
    server = start_server()
    assert server.system_status()["sandbox"]["jobs_sandboxed"], server.system_status()
    root = json.loads((server.home / "credentials.json").read_text())["api_key"]
    w = World(server, root, "")
    r = w.call("POST", "/v1/tenants", root, json={"id": "bravo", "name": "Bravo"})
    assert r.status_code == 201, r.text
    r = w.call("POST", "/v1/keys", root, json={"name": "mallory", "tenant": "bravo"})
    assert r.status_code == 201, r.text
    w.member_b = r.json()["secret"]
    yield w
    assert w.server.running, "the server died"


def test_a_second_tenant_cannot_reach_keys_database_other_jobs_or_the_server(
    world: World,
) -> None:
    home = world.server.home
    victim = world.submit(world.root, entrypoint=[PY, "-c", VICTIM], name="victim")
    wait_for(lambda: (home / "jobs" / victim["id"] / "work" / "ready").exists(), timeout=30)
    targets = {
        "credentials": str(home / "credentials.json"),
        "database": str(home / "jobyard.db"),
        "jobs_dir": str(home / "jobs"),
        "victim_log": str(home / "jobs" / victim["id"] / "logs" / "attempt-1.log"),
        "victim_output": str(home / "jobs" / victim["id"] / "work" / "output" / "secret.txt"),
        "server_pid": world.server.proc.pid if world.server.proc else 0,
        "data_dir": str(home),
    }
    attack = world.submit(
        world.member_b, entrypoint=[PY, "-c", ATTACK], env={"TARGETS": json.dumps(targets)}
    )
    done = world.wait(world.member_b, attack["id"])
    log = world.log(world.member_b, attack["id"])
    assert done["status"] == "succeeded", (done, log)
    line = next(x for x in log.splitlines() if x.startswith("ATTACK "))
    results: dict[str, str] = json.loads(line.removeprefix("ATTACK "))
    assert results.pop("write its own directory").startswith("SUCCEEDED"), results
    succeeded = {k: v for k, v in results.items() if not v.startswith("blocked")}
    assert not succeeded, f"a job of tenant B got through: {json.dumps(succeeded, indent=1)}"
    assert len(results) == 12, results
    assert SECRET not in log and world.root not in log
    # the server and tenant A's job are unharmed
    assert world.server.running
    assert not (home / "pwned").exists()
    victim_now = world.job(world.root, victim["id"])
    assert victim_now["status"] == "running", victim_now
    assert (victim_now.get("progress") or {}).get("stage") != "hijacked", victim_now


def test_the_data_directory_database_and_logs_are_the_servers_alone(world: World) -> None:
    job = world.submit(world.root, entrypoint=[PY, "-c", "print('hello')"])
    world.wait(world.root, job["id"])
    home = world.server.home
    log = home / "jobs" / job["id"] / "logs" / "attempt-1.log"
    private = [home, home / "credentials.json", log]
    if world.server.db_url.startswith("sqlite:///"):
        private.append(Path(world.server.db_url.removeprefix("sqlite:///")))
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in private}
    expected = {p.name: oct(0o600) for p in private[1:]}
    assert modes == {home.name: oct(0o700), **expected}


def _host_sleeps() -> list[psutil.Process]:
    """Live ``sleep 360N`` processes of the host (the tests' jobs start them)."""
    found = []
    for proc in psutil.process_iter():
        try:
            argv = proc.cmdline()
            if argv[:1] == ["sleep"] and argv[1:2] and argv[1].startswith("360"):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.Error:
            continue
    return found


def test_setsid_and_nohup_do_not_outlive_a_cancel(world: World) -> None:
    script = (
        "setsid sh -c 'exec sleep 3601' & nohup sleep 3602 >/dev/null 2>&1 & "
        "echo escaped; exec sleep 3600"
    )
    job = world.submit(world.member_b, entrypoint=script)
    wait_for(lambda: "escaped" in world.log(world.member_b, job["id"]), timeout=30)
    wait_for(lambda: len(_host_sleeps()) == 3, timeout=10)
    r = world.call("POST", f"/v1/jobs/{job['id']}/cancel", world.member_b, json={})
    assert r.status_code in (200, 202), r.text
    assert world.wait(world.member_b, job["id"])["status"] == "cancelled"
    wait_for(lambda: not _host_sleeps(), timeout=10)


def test_what_a_job_leaves_behind_dies_with_it(world: World) -> None:
    job = world.submit(world.member_b, entrypoint="setsid sleep 3603 & nohup sleep 3604 & exit 0")
    assert world.wait(world.member_b, job["id"])["status"] == "succeeded"
    wait_for(lambda: not _host_sleeps(), timeout=10)


FORK_BOMB = """
import os, sys, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        n += 1
except OSError as e:
    print(f"fork failed after {n} children: {e}", flush=True)
    sys.exit(1)
"""


def test_a_fork_bomb_stays_inside_its_job(world: World) -> None:
    job = world.submit(world.member_b, entrypoint=[PY, "-c", FORK_BOMB])
    done = world.wait(world.member_b, job["id"], timeout=90)
    assert done["status"] == "failed", done
    assert "limit of 1024 processes" in done["message"], done["message"]
    assert "fork failed after" in world.log(world.member_b, job["id"])
    pids = procs.tree(world.server.proc.pid if world.server.proc else 0)
    assert len(pids) < 50, "the fork bomb's children outlived it"
    after = world.submit(world.member_b, entrypoint=[PY, "-c", "print('still fine')"])
    assert world.wait(world.member_b, after["id"])["status"] == "succeeded"


def test_a_memory_hog_is_killed_by_the_kernel_at_its_limit(world: World) -> None:
    r = world.call(
        "POST",
        "/v1/environments",
        world.member_b,
        json={"name": "small", "memory_limit_mb": 64},
    )
    assert r.status_code == 201, r.text
    hog = "b = b'x' * (512 * 1024 * 1024); print('allocated', len(b))"
    job = world.submit(world.member_b, entrypoint=[PY, "-c", hog], environment="small")
    done = world.wait(world.member_b, job["id"], timeout=60)
    assert done["status"] == "failed", done
    assert done["error_type"] == "MEMORY_LIMIT_EXCEEDED", done
    assert "limit of 64 MB" in done["message"], done["message"]
    assert "allocated" not in world.log(world.member_b, job["id"])
    assert world.server.running
    usage = world.job(world.member_b, job["id"]).get("usage") or {}
    peak = usage.get("peak_rss_bytes") or 0
    assert 0 < peak <= 64 * 1024 * 1024 + 1024 * 1024, usage


def test_the_server_runs_jobs_as_an_unprivileged_user_in_their_own_namespaces(
    world: World,
) -> None:
    script = "import os; print('ids', os.getuid(), os.getgid(), os.getpid(), os.getcwd())"
    job = world.submit(world.member_b, entrypoint=[PY, "-c", script])
    done = world.wait(world.member_b, job["id"])
    assert done["status"] == "succeeded", done
    line = next(x for x in world.log(world.member_b, job["id"]).splitlines() if x.startswith("ids"))
    _, uid, gid, pid, cwd = line.split()
    assert int(uid) == pwd.getpwnam("nobody").pw_uid and int(gid) != 0
    assert int(pid) < 10, "the job should see only its own PID namespace"
    assert cwd.endswith(f"{job['id']}/work")


# ---- a host that cannot sandbox --------------------------------------------------------
NO_BWRAP = {"PATH": "/nonexistent"}  # bwrap not found: the sandbox is unavailable


def _serve_once(
    server: Server, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``jobyard serve`` on the server's data dir and database, expected to refuse."""
    return subprocess.run(
        [JOBYARD, "serve", "--port", str(server.port), "--database-url", server.db_url, *args],
        env={**_clean_env(server.home), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_sandbox_a_second_tenant_needs_the_operators_consent(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server("--sandbox", "off", env={"JOBYARD_ALLOW_UNSANDBOXED_JOBS": "0"})
    status = server.system_status()["sandbox"]
    assert status["jobs_sandboxed"] is False
    assert "turned off" in status["sandbox_unavailable"]
    ready = httpx.get(f"{server.url}/readyz", timeout=5).json()
    assert ready["details"]["jobs_sandboxed"] is False
    assert "NOT sandboxed" in server.log_path.read_text()
    root = json.loads((server.home / "credentials.json").read_text())["api_key"]
    world = World(server, root, "")
    refused = world.call("POST", "/v1/tenants", root, json={"id": "bravo", "name": "Bravo"})
    assert refused.status_code == 409, refused.text
    assert "--allow-unsandboxed-jobs" in refused.json()["message"]
    server.stop()

    consenting = start_server("--sandbox", "off", "--allow-unsandboxed-jobs")
    world.server = consenting
    made = world.call("POST", "/v1/tenants", root, json={"id": "bravo", "name": "Bravo"})
    assert made.status_code == 201, made.text
    consenting.stop()

    refused_start = _serve_once(consenting, "--sandbox", "off", env={})
    assert refused_start.returncode == 2, refused_start.stderr
    assert "this database has 2 tenants" in refused_start.stderr
    assert "--allow-unsandboxed-jobs" in refused_start.stderr
    assert "Traceback" not in refused_start.stderr


def test_sandbox_on_refuses_to_start_on_a_host_that_cannot_sandbox(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server()
    server.stop()
    refused = _serve_once(server, "--sandbox", "on", env=NO_BWRAP)
    assert refused.returncode == 2, refused.stderr
    assert "jobs cannot be sandboxed on this host: " in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_restarted_node_kills_what_a_previous_life_left_in_its_cgroups(
    world: World,
    start_server: StartServer,  # noqa: F811
) -> None:
    server = world.server
    node_id = (server.home / "node_id").read_text().strip()
    server.stop()
    tree, why = CgroupTree.detect(node_id, server.home)
    assert tree is not None, why
    leftover = tree.create("left-by-a-previous-life")  # owned by no job
    orphan = subprocess.Popen(["sleep", "3605"], start_new_session=True)
    try:
        for procs_file in leftover.procs_files():
            procs_file.write_text(str(orphan.pid))
        assert orphan.pid in leftover.pids()
        world.server = start_server()  # the same data directory: the same node
        assert orphan.wait(10) == -9
        assert "killed 1 processes a previous life of node" in world.server.log_path.read_text()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


NETWORK_PROBE = """
import json, os, socket
from urllib.parse import urlparse
api = urlparse(os.environ["JOBYARD_API_URL"])
out = {"interfaces": sorted(name for _, name in socket.if_nameindex())}
try:
    socket.create_connection((api.hostname, api.port), timeout=5).close()
    out["api"] = "reached"
except OSError as e:
    out["api"] = f"unreachable: {e}"
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
socket.create_connection(server.getsockname(), timeout=5).close()
out["loopback"] = "works"
print("NET " + json.dumps(out), flush=True)
"""


def test_network_none_leaves_a_job_only_a_loopback_interface(world: World) -> None:
    r = world.call(
        "POST", "/v1/environments", world.member_b, json={"name": "offline", "network": "none"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["network"] == "none"
    seen = {}
    for environment in ("offline", None):
        body: dict[str, Any] = {"entrypoint": [PY, "-c", NETWORK_PROBE]}
        if environment:
            body["environment"] = environment
        job = world.submit(world.member_b, **body)
        done = world.wait(world.member_b, job["id"])
        log = world.log(world.member_b, job["id"])
        assert done["status"] == "succeeded", (done, log)
        line = next(x for x in log.splitlines() if x.startswith("NET "))
        seen[environment or "full"] = json.loads(line.removeprefix("NET "))
    assert seen["offline"]["interfaces"] == ["lo"], seen
    assert seen["offline"]["api"].startswith("unreachable"), seen
    assert seen["offline"]["loopback"] == "works"
    assert seen["full"]["api"] == "reached", seen


CPU_HOG = """
import os, time
from multiprocessing import Process

def spin():
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass

start = time.monotonic()
workers = [Process(target=spin) for _ in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()
wall = time.monotonic() - start
t = os.times()
print(f"CPU {(t.children_user + t.children_system) / wall:.2f}", flush=True)
"""


def test_a_job_uses_no_more_cpu_than_its_slots(world: World) -> None:
    """Two busy processes of a one-slot job share one core (cgroup CPU quota): together
    they get about one second of CPU per second, not two."""
    job = world.submit(world.member_b, entrypoint=[PY, "-c", CPU_HOG])
    node_id = (world.server.home / "node_id").read_text().strip()
    tree, why = CgroupTree.detect(node_id, world.server.home)
    assert tree is not None, why
    assert wait_for(lambda: _quota_of_a_running_group(tree)) == "100000"
    done = world.wait(world.member_b, job["id"])
    log = world.log(world.member_b, job["id"])
    assert done["status"] == "succeeded", (done, log)
    ratio = float(next(x for x in log.splitlines() if x.startswith("CPU ")).split()[1])
    assert ratio <= 1.3, f"the job used {ratio} cores with one slot"


def _quota_of_a_running_group(tree: CgroupTree) -> str | None:
    """The CPU quota of the node's one group that has processes (attempts reuse groups,
    so the group is not named after the job)."""
    for group in tree.roots["cpu"].iterdir():
        if group.is_dir() and (group / "cgroup.procs").read_text().split():
            return (group / "cpu.cfs_quota_us").read_text().strip()
    return None


def test_a_stopped_node_leaves_no_cgroups_behind(world: World) -> None:
    job = world.submit(world.member_b, entrypoint=[PY, "-c", "print('hello')"])
    assert world.wait(world.member_b, job["id"])["status"] == "succeeded"
    node_id = (world.server.home / "node_id").read_text().strip()
    tree, why = CgroupTree.detect(node_id, world.server.home)
    assert tree is not None, why
    world.server.stop()
    assert not any(root.exists() for root in tree.roots.values()), tree.roots
    world.server.start()  # the fixture's teardown expects a running server
