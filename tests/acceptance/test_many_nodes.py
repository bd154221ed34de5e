"""Many hosts, simulated on one machine: three ``jobyard serve`` processes, each with a
data directory of its own, share one PostgreSQL database (a private one for this
module) and one storage location (``--storage-url``).

The storage is either a shared directory (what an NFS mount is to each host) or an
S3-compatible object store. There is no S3 here: moto's server mode, started by the
test on 127.0.0.1 as a subprocess, stands in for it, reached through s3fs exactly as a
real bucket would be (``s3://bucket/prefix``, the endpoint from the environment).

Every job counts its own starts: its first act is to report ``<job id> <attempt>`` over
TCP to a counter run by the test (bash's ``/dev/tcp``; sandboxed jobs share the host's
network), so "run exactly once" is checked outside of jobyard's own bookkeeping.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.acceptance.hooks import SERVER_LOGS
from tests.acceptance.serverproc import PY, Server, _free_port
from tests.conftest import GATES, PG_URL, REQUIRE_PG, _pg_reason, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.postgres]

#: jobs of the spread test: 300 on the shared directory; fewer on moto, whose server is
#: slower than a directory by far (what is tested of the storage is the same)
JOBS = {"dir": 300, "s3": 60}
ENDED = {"succeeded", "failed", "timed_out", "cancelled"}
#: timings for the nodes: logs shipped often; leases short as in the fault tests, yet
#: with room for the stalls of six servers' worth of work on a shared 2-core machine (a
#: node fences its jobs after the outage tolerance without a renewal)
NODE_ENV = {
    "JOBYARD_LOG_SYNC_INTERVAL_S": "0.2",
    "JOBYARD_SLOTS": "2",
    "JOBYARD_OUTAGE_TOLERANCE_S": "8",
    "JOBYARD_LEASE_TTL_S": "11",
}


# ---- the job and its start counter ----------------------------------------------------------
def job_script(counter_port: int, gate: Path | None = None) -> list[str]:
    """A bash job: reports its start, logs a line, (waits for ``gate``,) writes a result."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done\n" if gate else ""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{counter_port} || exit 90\n"
        'echo "$JOBYARD_JOB_ID $JOBYARD_ATTEMPT" >&3\n'
        "read -r ack <&3\n"
        "exec 3>&-\n"
        'echo "started $JOBYARD_JOB_ID attempt $JOBYARD_ATTEMPT"\n'
        f"{wait}"
        "mkdir -p output\n"
        "printf 'result of %s\\n' \"$JOBYARD_JOB_ID\" > output/result.txt\n"
        'echo "done $JOBYARD_JOB_ID"\n'
    )
    return ["/bin/bash", "-c", script]


class _CountHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode().strip()
        server: StartCounter = self.server  # type: ignore[assignment]
        with server.lock:
            server.starts.append(line)
        self.wfile.write(b"ok\n")


class StartCounter(socketserver.ThreadingTCPServer):
    """Records the ``<job id> <attempt>`` line of every job start."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CountHandler)
        self.lock = threading.Lock()
        self.starts: list[str] = []
        self.port: int = self.server_address[1]

    def counts(self) -> collections.Counter[str]:
        """Starts per job id."""
        with self.lock:
            return collections.Counter(line.split()[0] for line in self.starts)

    def attempts(self, job_id: str) -> list[int]:
        with self.lock:
            return sorted(int(a) for j, a in (s.split() for s in self.starts) if j == job_id)


# ---- the shared database and storage -------------------------------------------------------
@contextlib.contextmanager
def private_database() -> Iterator[str]:
    """A PostgreSQL database of this module's own (the nodes migrate it at start)."""
    reason = _pg_reason()
    if reason:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"jobyard_nodes_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_s3(log_path: Path) -> Iterator[dict[str, str]]:
    """moto's S3 server (standing in for S3) on 127.0.0.1 with an empty bucket; yields the
    environment that points s3fs at it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def up() -> bool:
            assert proc.poll() is None, "moto's server exited"
            try:
                return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30, interval=0.05)
        env = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": endpoint}
        s3 = s3fs_for(env)
        s3.mkdir("jobyard")
        yield env
    finally:
        proc.terminate()
        proc.wait(10)


def s3fs_for(env: dict[str, str]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["FSSPEC_S3_ENDPOINT_URL"]},
        skip_instance_cache=True,
    )


# ---- the nodes --------------------------------------------------------------------------------
class Node(Server):
    """A ``jobyard serve`` of the cluster with its own data directory. A dispatch-only
    node (``--no-api``) is ready once it registered as a node."""

    start_timeout_s = 90.0  #: nodes start two at a time, beside the other nodes' jobs

    def __init__(self, *args: Any, ready: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = ready

    def _ready(self) -> bool:
        if self.ready is None:
            return super()._ready()
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"jobyard serve exited early with code {self.proc.returncode}")
        return bool(self.ready())


@dataclass
class Cluster:
    kind: str
    root: Path
    db_url: str
    storage_url: str
    env: dict[str, str]
    counter: StartCounter
    key: str = ""
    nodes: list[Node] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def start_node(self, *args: str, ready: Any = None) -> Node:
        (node,) = self.start_nodes(1, *args, ready=ready)
        return node

    def start_nodes(self, count: int, *args: str, ready: Any = None) -> list[Node]:
        """Start ``count`` more nodes at once (each in its own data directory)."""
        new = []
        for i in range(len(self.nodes), len(self.nodes) + count):
            home = self.root / f"node{i}"
            home.mkdir()
            if self.key:  # the first node made the admin key: the others' clients use it
                creds = {"url": "", "api_key": self.key}
                (home / "credentials.json").write_text(json.dumps(creds))
            log_path = self.root / f"serve-{i}.log"
            self.logs.append(log_path)
            env = {
                **self.env,
                **NODE_ENV,
                "JOBYARD_SANDBOX_READ_ONLY": str(self.root / GATES),
                "JOBYARD_NODE_ID": f"node{i}",
            }
            args_ = ("--storage-url", self.storage_url, *args)
            node = Node(home, self.db_url, log_path, _free_port(), args_, env, ready=ready)
            self.nodes.append(node)
            new.append(node)
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda n: n.start(), new))
        if not self.key:
            self.key = json.loads((new[0].home / "credentials.json").read_text())["api_key"]
        return new

    @contextlib.contextmanager
    def http(self, node: Node) -> Iterator[httpx.Client]:
        """The node's client (one per node, shared by threads: making one is costly)."""
        if node.url not in self.clients:
            self.clients[node.url] = httpx.Client(
                base_url=node.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
            )
        yield self.clients[node.url]

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        live = [node for node in self.nodes if node.running]
        if live:
            with ThreadPoolExecutor(len(live)) as pool:
                list(pool.map(lambda n: n.stop(), live))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server for the module (the environment that points s3fs at it)."""
    with moto_s3(tmp_path_factory.mktemp("moto") / "moto.log") as env:
        yield env


@pytest.fixture(scope="module", params=["dir", "s3"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"nodes-{kind}")
    (root / GATES).mkdir()
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(private_database())
        if kind == "s3":
            env = request.getfixturevalue("moto")
            storage_url = "s3://jobyard/shared"
        else:
            env = {}
            storage_url = str(root / "shared-storage")
        counter = StartCounter()
        threading.Thread(target=counter.serve_forever, daemon=True).start()
        stack.callback(counter.server_close)
        stack.callback(counter.shutdown)
        c = Cluster(kind, root, db_url, storage_url, env, counter)
        stack.callback(c.stop)
        c.start_node()  # migrates the database and makes the admin key
        c.start_nodes(2)
        yield c


@pytest.fixture(autouse=True)
def _server_logs(request: pytest.FixtureRequest) -> None:
    """Attach the nodes' logs to a failure report (tests/acceptance/hooks.py)."""
    if "cluster" in request.fixturenames:
        c: Cluster = request.getfixturevalue("cluster")
        request.node.stash[SERVER_LOGS] = c.logs


# ---- helpers ----------------------------------------------------------------------------------
def submit(c: Cluster, node: Node, bodies: list[dict[str, Any]]) -> list[str]:
    with c.http(node) as http:
        resp = http.post("/v1/jobs/batch", json={"jobs": bodies})
        resp.raise_for_status()
        items = resp.json()["items"]
    ids = [item["id"] for item in items if item.get("id")]
    assert len(ids) == len(bodies), items
    return ids


def by_status(c: Cluster, node: Node) -> dict[str, int]:
    with c.http(node) as http:
        resp = http.get("/v1/jobs", params={"limit": 1})
        resp.raise_for_status()
        counts: dict[str, int] = resp.json()["summary"]["by_status"]
        return counts


def all_ended(c: Cluster, total: int) -> bool:
    counts = by_status(c, c.nodes[0])
    return sum(n for s, n in counts.items() if s in ENDED) >= total


def check_reads(c: Cluster, node: Node, job: dict[str, Any]) -> None:
    """The job's log, results and result download, through ``node``."""
    job_id = job["id"]
    with c.http(node) as http:
        log = http.get(f"/v1/jobs/{job_id}/logs")
        log.raise_for_status()
        assert f"started {job_id} attempt {job['attempt']}" in log.text, (node.url, log.text)
        assert f"done {job_id}" in log.text, (node.url, log.text)
        res = http.get(f"/v1/jobs/{job_id}/results", params={"format": "detailed"})
        res.raise_for_status()
        (artifact,) = res.json()["artifacts"]
        assert artifact["path"] == "result.txt"
        assert artifact["download_url"].startswith(node.url)
        file = http.get(f"/v1/jobs/{job_id}/results/files/result.txt")
        file.raise_for_status()
        assert file.text == f"result of {job_id}\n"


# ---- the tests ---------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_jobs_spread_over_three_nodes_each_run_once_and_read_through_every_node(
    cluster: Cluster,
) -> None:
    c = cluster
    script = job_script(c.counter.port)
    ids: list[str] = []
    total = JOBS[c.kind]
    per_node = total // len(c.nodes)
    for node in c.nodes:  # every node's API accepts a share
        ids += submit(c, node, [{"entrypoint": script} for _ in range(per_node)])
    wait_for(lambda: all_ended(c, total), timeout=180, interval=0.5)

    with c.http(c.nodes[0]) as http:
        jobs = [http.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert collections.Counter(j["status"] for j in jobs) == {"succeeded": total}, [
        (j["id"], j["status"], j["message"]) for j in jobs if j["status"] != "succeeded"
    ]
    ran_on = collections.Counter(j["node_id"] for j in jobs)
    assert set(ran_on) == {"node0", "node1", "node2"}, ran_on  # spread over all three
    counts = c.counter.counts()
    assert set(counts) == set(ids)
    assert [j for j, n in counts.items() if n != 1] == []  # each started exactly once

    # every node serves every job's log, results and download (two of three read them
    # from the shared storage: the job ran elsewhere)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda pair: check_reads(c, *pair), [(n, j) for j in jobs for n in c.nodes]))
    sample = jobs[:: total // 6]
    for node in c.nodes:
        with c.http(node) as http:
            for job in sample:
                tail = http.get(f"/v1/jobs/{job['id']}/logs", params={"tail": 1})
                assert tail.text == f"done {job['id']}\n", (node.url, tail.text)
                zipped = http.get(f"/v1/jobs/{job['id']}/results", params={"format": "download"})
                assert zipped.status_code == 200
                assert zipped.headers["content-type"] == "application/zip"
                assert zipped.content[:2] == b"PK"


@pytest.mark.timeout(120)
def test_a_killed_node_loses_no_job_its_attempts_end_node_lost_and_retry_elsewhere(
    cluster: Cluster,
) -> None:
    c = cluster
    gate = c.root / GATES / f"release-{uuid.uuid4().hex[:6]}"
    body = {
        "entrypoint": job_script(c.counter.port, gate),
        "max_attempts": 2,
        "retry_on": ["node_lost"],
        "retry_backoff_s": 0.1,
    }
    ids: list[str] = []
    for node in c.nodes:
        ids += submit(c, node, [body] * 3)
    victim = c.nodes[2]
    survivors = c.nodes[:2]

    def running_on_victim() -> list[str] | None:
        with c.http(survivors[0]) as http:
            jobs = [http.get(f"/v1/jobs/{j}").json() for j in ids]
        mine = [
            j["id"] for j in jobs if j["status"] == "running" and j["node_id"] == victim.home.name
        ]
        return mine if len(mine) == 2 else None  # its two slots

    doomed: list[str] = wait_for(running_on_victim, timeout=60, interval=0.1)

    def live_log_everywhere() -> bool:  # the running log, shipped to the storage
        for node in survivors:
            with c.http(node) as http:
                for job_id in doomed:
                    text = http.get(f"/v1/jobs/{job_id}/logs").text
                    if f"started {job_id} attempt 1" not in text:
                        return False
        return True

    wait_for(live_log_everywhere, timeout=30, interval=0.1)
    victim.kill()
    gate.touch()

    total = JOBS[c.kind] + len(ids)  # the first test's jobs are still there
    wait_for(lambda: all_ended(c, total), timeout=90, interval=0.25)
    with c.http(survivors[0]) as http:
        jobs = {j: http.get(f"/v1/jobs/{j}").json() for j in ids}
        attempts = {j: http.get(f"/v1/jobs/{j}/attempts").json()["items"] for j in doomed}
        first_logs = {j: http.get(f"/v1/jobs/{j}/logs", params={"attempt": 1}).text for j in doomed}
    assert {j: job["status"] for j, job in jobs.items()} == dict.fromkeys(ids, "succeeded")
    for job_id in doomed:
        first, second = attempts[job_id]
        assert (first["node_id"], first["state"], first["error_type"]) == (
            victim.home.name,
            "failed",
            "NODE_LOST",
        ), first
        assert second["state"] == "succeeded" and second["node_id"] != victim.home.name, second
        assert c.counter.attempts(job_id) == [1, 2]
        # what the dead node shipped of the first attempt's log is kept
        assert f"started {job_id} attempt 1" in first_logs[job_id]
    others = [j for j in ids if j not in doomed]
    assert all(c.counter.attempts(j) == [1] for j in others)


def test_an_api_only_node_serves_the_jobs_a_dispatch_only_node_runs(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """``--no-dispatcher`` (API only) and ``--no-api`` (jobs only) on a shared directory."""
    (tmp_path / GATES).mkdir()
    with contextlib.ExitStack() as stack:
        counter = StartCounter()
        threading.Thread(target=counter.serve_forever, daemon=True).start()
        stack.callback(counter.server_close)
        stack.callback(counter.shutdown)
        c = Cluster(
            "dir",
            tmp_path,
            stack.enter_context(private_database()),
            str(tmp_path / "shared"),
            {},
            counter,
        )
        request.node.stash[SERVER_LOGS] = c.logs
        stack.callback(c.stop)
        api = c.start_node("--no-dispatcher")

        def registered() -> bool:
            with c.http(api) as http:
                status = http.get("/v1/system/status").json()
            return any(n["node_id"] == "node1" for n in status["execution_nodes"])

        worker = c.start_node("--no-api", "--public-url", api.url, ready=registered)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{worker.url}/healthz", timeout=2)
        ids = submit(c, api, [{"entrypoint": job_script(counter.port)} for _ in range(4)])
        wait_for(lambda: all_ended(c, len(ids)), timeout=60, interval=0.2)
        with c.http(api) as http:
            jobs = [http.get(f"/v1/jobs/{j}").json() for j in ids]
        assert {(j["status"], j["node_id"]) for j in jobs} == {("succeeded", "node1")}
        for job in jobs:
            check_reads(c, api, job)
        assert (tmp_path / "shared" / "logs" / ids[0] / "attempt-1.log").is_file()
        assert not (api.home / "jobs").exists()  # the API node ran nothing itself


@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_a_reader_follows_a_log_as_it_grows_on_the_storage(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The archive as another node's API uses it, on the same storage: one filesystem
    object reads while the log grows (s3fs caches listings; a stale one would hide
    what was shipped after the first read)."""
    import fsspec.config

    from jobyard.storage.fs import GuardedFS, Storage
    from jobyard.storage.logarchive import LogArchive

    if kind == "s3":
        endpoint = request.getfixturevalue("moto")["FSSPEC_S3_ENDPOINT_URL"]
        s3_conf = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
        monkeypatch.setitem(fsspec.config.conf, "s3", s3_conf)
        url = f"s3://jobyard/probe-{uuid.uuid4().hex[:6]}"
    else:
        url = str(tmp_path / "storage")
    writer = LogArchive(Storage(url))
    reader = LogArchive(Storage(url))
    fs = reader.storage.fs.unguarded  # fsspec shares instances: the reader gets its own
    own = type(fs)(skip_instance_cache=True, **fs.storage_options)
    reader.storage.fs = GuardedFS(own, url)
    assert reader.storage.fs is not writer.storage.fs
    job = str(uuid.uuid4())
    local = tmp_path / "attempt-1.log"
    local.write_bytes(b"")
    assert reader.read_range(job, 1, 0, 100) == b""  # nothing yet (and now cached)
    shipped = 0
    expected = b""
    for i in range(3):
        line = f"line {i}\n".encode()
        with local.open("ab") as f:
            f.write(line)
        expected += line
        shipped = writer.ship(job, 1, local, shipped, local.stat().st_size)
        assert reader.read_range(job, 1, 0, 100) == expected
        assert reader.size(job, 1) == len(expected)
    with local.open("ab") as f:
        f.write(b"the end\n")
    writer.seal(job, 1, local)
    assert reader.read_range(job, 1, 0, 100) == expected + b"the end\n"
