"""The shared storage (``--storage-url``) going down under a real ``jobyard serve``: reads
and uploads answer ``503 STORAGE_UNAVAILABLE`` with ``Retry-After`` and a clear message
(not a 500), and work again once the storage is back.

There is no S3 here: moto's server mode, started by the test on 127.0.0.1 as a
subprocess, stands in for it, reached through s3fs as a real bucket would be. Stopping
that process is what an object store that does not answer looks like to the server.
(A shared directory that fails cannot be made here: the tests run as root, whom file
permissions do not stop, and mounting an NFS share is beyond them.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.serverproc import PY, StartServer, _free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # few retries: the server's answer to a dead endpoint comes in seconds, as it would
    # with an operator's settings; the default retries would only make it slower
    "AWS_MAX_ATTEMPTS": "2",
}


class Moto:
    """moto's S3 server on a fixed port, stopped and started again by the test (its
    buckets live in memory: a restart starts empty)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self._up, timeout=30, interval=0.05)
        r = httpx.put(f"{self.endpoint}/jobyard", timeout=10)  # the bucket
        assert r.status_code == 200, r.text

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "moto's server exited"
        try:
            return httpx.get(f"{self.endpoint}/moto-api/", timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    m = Moto(tmp_path / "moto.log")
    m.start()
    yield m
    m.stop()


def _unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == "STORAGE_UNAVAILABLE", body
    assert "storage" in body["message"] and "retry" in body["message"], body
    assert r.headers.get("Retry-After"), r.headers


def test_reads_and_uploads_answer_503_while_the_object_store_is_down(
    db_url: str, start_server: StartServer, moto: Moto
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the storage is what is tested; the database does not matter")
    env = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": moto.endpoint}
    server = start_server("--storage-url", "s3://jobyard/shared", env=env)
    api_key = json.loads((server.home / "credentials.json").read_text())["api_key"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120
    ) as http:
        assert http.post("/v1/folders", json={"name": "data"}).status_code == 201
        r = http.put("/v1/folders/data/files/a/b.txt", content=b"hello")
        assert r.status_code in (200, 201), r.text
        r = http.get("/v1/folders/data/files/a/b.txt")
        assert (r.status_code, r.content) == (200, b"hello")

        moto.stop()
        _unavailable(http.get("/v1/folders/data/files/a/b.txt"))
        _unavailable(http.put("/v1/folders/data/files/c.txt", content=b"more"))
        # what does not need the storage still answers
        assert http.get("/v1/folders/data/files").status_code == 200

        moto.start()  # back, empty (moto keeps its buckets in memory)
        r = http.put("/v1/folders/data/files/c.txt", content=b"more")
        assert r.status_code in (200, 201), r.text
        r = http.get("/v1/folders/data/files/c.txt")
        assert (r.status_code, r.content) == (200, b"more")
