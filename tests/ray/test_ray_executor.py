"""The Ray executor against a real Ray cluster: a head node started by this module
(``ray start --head``, the venv's Ray, 2 CPUs on 127.0.0.1) and a real ``jobyard serve
--executor ray`` in front of it. Jobs go in through jobyard's API and CLI; each runs as a
Ray job; its logs, markers, results and end come back into jobyard.

One cluster serves the module; only the NODE_LOST test kills it (SIGKILL of its
processes, as a crash or ``ray stop --force`` would) and starts it again."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard.errors import InvalidInput
from jobyard.settings import Settings
from jobyard.wiring import make_executor, ray_slots
from tests.acceptance.serverproc import JOBYARD, Server, _describe, _free_port, jobyard
from tests.conftest import wait_for
from tests.support.wheels import build_wheel

ray = pytest.importorskip(
    "ray.job_submission", reason="Ray is not installed (pip install 'jobyard[ray]')"
)

from tests.ray.raycluster import RayHead  # noqa: E402

pytestmark = [pytest.mark.acceptance, pytest.mark.timeout(400)]

FIXTURES = Path(__file__).parent.parent / "fixtures"
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}
SECRET = "ALPHA-SECRET-5c1e07"


class Api:
    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
            **kw,
        )

    def submit(self, **body: Any) -> str:
        r = self.call("POST", "/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        return job_id

    def job(self, job_id: str, **params: Any) -> dict[str, Any]:
        r = self.call("GET", f"/v1/jobs/{job_id}", params=params)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    def wait(self, job_id: str, states: set[str] = ENDED, timeout: float = 120) -> dict[str, Any]:
        job: dict[str, Any] = wait_for(
            lambda: (j := self.job(job_id))["status"] in states and j, timeout=timeout, interval=0.1
        )
        return job

    def log(self, job_id: str) -> str:
        return self.call("GET", f"/v1/jobs/{job_id}/logs").text

    def wait_log(self, job_id: str, text: str, timeout: float = 120) -> str:
        log: str = wait_for(
            lambda: text in (got := self.log(job_id)) and got, timeout=timeout, interval=0.1
        )
        return log


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    # Ray's files (with the pip environment it clones from the venv, ~750 MB) go to a
    # short directory of their own (Ray's socket paths must stay under 108 bytes, which
    # pytest's temporary directories under xdist exceed) and are removed by a detached
    # rm after the module: removing them takes a minute on a loaded machine.
    ray_dir = Path(tempfile.mkdtemp(prefix="jyray-", dir="/tmp"))
    cluster = RayHead(ray_dir / "ray.log", temp_dir=ray_dir / "t").start()
    try:
        yield cluster
    finally:
        cluster.close()
        subprocess.Popen(["rm", "-rf", str(ray_dir)], start_new_session=True)


@pytest.fixture(scope="module")
def server(head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("jobyard")
    home = base / "home"
    home.mkdir()
    srv = Server(
        home,
        f"sqlite:///{base / 'jobyard.db'}",
        base / "serve.log",
        _free_port(),
        ("--executor", "ray", "--ray-address", head.address),
        # a long grace: a forced cancel does not wait for it
        {"JOBYARD_STOP_GRACE_S": "60", "JOBYARD_RAY_LOST_AFTER_S": "3"},
    )
    srv.start()
    yield srv
    import time as _t

    _s = _t.monotonic()
    srv.stop()
    print("TIMING server stop", _t.monotonic() - _s, flush=True)


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server, json.loads((server.home / "credentials.json").read_text())["api_key"])


def test_serve_refuses_to_start_without_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs the cluster's address"):
        make_executor(Settings(executor="ray", data_dir=tmp_path), "node")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBYARD_", "RAY_"))}
    nothing = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    done = subprocess.run(
        [
            JOBYARD,
            "serve",
            "--port",
            str(_free_port()),
            "--executor",
            "ray",
            "--ray-address",
            nothing,
        ],
        env={**env, "JOBYARD_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "cannot reach the Ray cluster" in done.stderr, done.stderr


def test_slots_come_from_the_clusters_cpus(head: RayHead) -> None:
    settings = Settings(executor="ray", ray_address=head.address, slots=0)
    assert ray_slots(settings).slots == 2
    assert ray_slots(settings.with_(slots=5)).slots == 5  # configured slots stay


def test_a_command_job_and_a_notebook_model_job_run_on_ray(
    server: Server, admin: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = (
        "import json, os\n"
        "print('hello from', os.environ['JOBYARD_JOB_ID'], flush=True)\n"
        "print('::jobyard::' + json.dumps({'type': 'progress', 'percent': 40, 'stage': 'half'}))\n"
        "out = os.environ['JOBYARD_OUTPUT_DIR']\n"
        "open(os.path.join(out, 'rows.csv'), 'w').write('a\\n1\\n2\\n')\n"
        "os.makedirs(os.path.join(out, 'sub'))\n"
        "open(os.path.join(out, 'sub', 'note.txt'), 'w').write('x')\n"
        "print(os.environ['GREETING'], flush=True)\n"
    )
    command_job = admin.submit(entrypoint=["python3", "-c", script], env={"GREETING": "hi there"})

    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    wheel = build_wheel(tmp_path, "scoring_helpers", 7)
    steps = [
        ["models", "create", "churn"],
        ["models", "push", "churn", str(FIXTURES / "notebooks" / "params.ipynb"), "-v", "1.0.0"],
        ["envs", "create", "py-ray", "--pip", f"scoring_helpers @ {wheel.as_uri()}"],
    ]
    for args in steps:
        result = jobyard(server, *args)
        assert result.returncode == 0, (args, _describe(result))
    result = jobyard(
        server,
        "submit",
        "--model",
        "churn:1.0.0",
        "--environment",
        "py-ray",
        "--param",
        "rows=4",
        "-q",
    )
    assert result.returncode == 0, _describe(result)
    notebook_job = result.stdout.strip()

    job = admin.wait(command_job)
    assert job["status"] == "succeeded", job
    assert job["exit_code"] == 0
    log = admin.log(command_job)
    assert f"hello from {command_job}" in log and "hi there" in log
    assert "running as Ray job jobyard-" in log
    assert "@@jobyard-ray" not in log  # the outputs' frames are taken out of the log
    assert job["progress"]["stage"] == "half", job["progress"]  # the marker was applied
    results = admin.call(
        "GET", f"/v1/jobs/{command_job}/results", params={"format": "detailed"}
    ).json()
    files = {r["path"]: r for r in results["artifacts"]}
    assert set(files) == {"rows.csv", "sub/note.txt"}, files
    assert files["rows.csv"]["record_count"] == 2

    job = admin.wait(notebook_job, timeout=240)
    assert job["status"] == "succeeded", (job, admin.log(notebook_job))
    log = admin.log(notebook_job)
    assert "wrote 4 rows" in log
    events = admin.call("GET", f"/v1/jobs/{notebook_job}/events").json()
    assert any(e.get("kind") == "cell" for e in events["items"]), events
    result = jobyard(server, "results", notebook_job)
    assert "scores.csv" in result.stdout and "params.executed.ipynb" in result.stdout
    # the environment was set up on the Ray worker, not on the jobyard host
    assert not (server.home / "envs").exists() or not any((server.home / "envs").iterdir())


def test_cancel_graceful_and_forced_then_a_timeout(admin: Api) -> None:
    graceful = admin.submit(
        entrypoint=[
            "python3",
            "-c",
            "import signal, sys, time\n"
            "def bye(*_):\n"
            "    print('cleaned up after SIGTERM', flush=True); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(0.1)\n",
        ]
    )
    stubborn = admin.submit(
        entrypoint=[
            "python3",
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print('ignoring SIGTERM', flush=True))\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(0.1)\n",
        ]
    )
    admin.wait_log(graceful, "ready")
    admin.wait_log(stubborn, "ready")
    waiting = admin.submit(entrypoint=["sleep", "60"], timeout_s=2)
    reason = admin.job(waiting)["pending_reason"]
    assert "waiting for Ray cluster capacity" in reason, reason

    r = admin.call("POST", f"/v1/jobs/{graceful}/cancel")
    assert r.status_code == 202, r.text
    r = admin.call("POST", f"/v1/jobs/{stubborn}/cancel", json={"force": True})
    assert r.status_code == 202, r.text
    job = admin.wait(graceful)
    assert job["status"] == "cancelled", job
    assert "cleaned up after SIGTERM" in admin.log(graceful)
    job = admin.wait(stubborn)
    assert job["status"] == "cancelled", job
    log = admin.log(stubborn)
    assert "ignoring SIGTERM" in log and "forced stop: the job is killed at once" in log, log

    job = admin.wait(waiting)
    assert job["status"] == "timed_out", job
    assert job["error_type"] == "TIMEOUT"


def test_tenants_cannot_read_each_others_files_or_the_servers_credentials(
    server: Server, admin: Api, head: RayHead
) -> None:
    """On this host the Ray worker runs as root, so the entrypoint runs in jobyard's
    bubblewrap sandbox there: another tenant's job sees neither Ray's copies of other
    jobs' packages (with their launch files: environment, job token) nor the server's
    data directory."""
    r = admin.call("POST", "/v1/tenants", json={"id": "bravo", "name": "Bravo"})
    assert r.status_code == 201, r.text
    r = admin.call("POST", "/v1/keys", json={"name": "mallory", "tenant": "bravo"})
    assert r.status_code == 201, r.text
    bravo = Api(server, r.json()["secret"])

    victim = admin.submit(
        entrypoint='mkdir -p output; echo "$SECRET" > output/secret.txt; echo "$SECRET"',
        env={"SECRET": SECRET},
    )
    assert admin.wait(victim)["status"] == "succeeded"
    targets = {
        "credentials": str(server.home / "credentials.json"),
        "database": str(server.home.parent / "jobyard.db"),
        "victim_log": str(server.home / "logs"),
        "ray_dir": str(head.temp_dir),
        "secret": SECRET,
    }
    attack = r"""
import glob, json, os, sys
t = json.loads(os.environ["TARGETS"])
found = {}
def attempt(name, action):
    try:
        found[name] = "SUCCEEDED: " + repr(action())[:200]
    except Exception as e:
        found[name] = f"blocked ({type(e).__name__})"
def grep_secret():
    hits = []
    for pattern in (t["ray_dir"] + "/**", "/tmp/**", "/root/**", t["victim_log"] + "/**"):
        for path in glob.glob(pattern, recursive=True):
            try:
                if os.path.isfile(path) and t["secret"] in open(path, errors="ignore").read():
                    hits.append(path)
            except OSError:
                pass
    if not hits:
        raise LookupError("the secret is nowhere to be read")
    return hits
attempt("read credentials.json", lambda: open(t["credentials"]).read())
attempt("read the database", lambda: open(t["database"], "rb").read(16))
def packages():
    found = glob.glob(t["ray_dir"] + "/session_*/runtime_resources/working_dir_files/*")
    if not found:
        raise LookupError("no job package Ray unpacked is visible")
    return found
attempt("list the job packages Ray unpacked", packages)
attempt("find another tenant's secret", grep_secret)
attempt("write its own directory", lambda: open("mine.txt", "w").write("ok"))
print("ATTACK " + json.dumps(found), flush=True)
"""
    job_id = bravo.submit(
        entrypoint=["python3", "-c", attack], env={"TARGETS": json.dumps(targets)}
    )
    job = bravo.wait(job_id)
    assert job["status"] == "succeeded", (job, bravo.log(job_id))
    line = next(x for x in bravo.log(job_id).splitlines() if x.startswith("ATTACK "))
    found = json.loads(line[len("ATTACK ") :])
    assert found.pop("write its own directory").startswith("SUCCEEDED"), found
    leaked = {k: v for k, v in found.items() if v.startswith("SUCCEEDED")}
    assert not leaked, leaked
    assert bravo.call("GET", f"/v1/jobs/{victim}/logs").status_code == 404


def test_a_lost_cluster_fails_its_jobs_node_lost_and_the_retry_succeeds(
    head: RayHead, admin: Api
) -> None:
    job_id = admin.submit(
        entrypoint="echo attempt $JOBYARD_ATTEMPT; [ $JOBYARD_ATTEMPT -gt 1 ] || sleep 300",
        max_attempts=2,
        retry_on=["node_lost"],
        retry_backoff_s=0,
    )
    admin.wait_log(job_id, "attempt 1")
    head.kill()
    attempts: list[dict[str, Any]] = wait_for(
        lambda: [
            a
            for a in admin.call("GET", f"/v1/jobs/{job_id}/attempts").json()["items"]
            if a["error_type"] == "NODE_LOST"
        ],
        timeout=60,
    )
    assert attempts[0]["attempt"] == 1 and "Ray cluster" in attempts[0]["message"], attempts
    assert admin.job(job_id)["status"] == "queued", admin.job(job_id)  # nothing is claimed
    head.start()
    job = admin.wait(job_id, timeout=180)
    assert job["status"] == "succeeded", (job, admin.log(job_id))
    assert job["attempt"] == 2
    assert "attempt 2" in admin.log(job_id)
