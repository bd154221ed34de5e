"""Folders over real HTTP (SDK, raw httpx and the CLI) on SQLite and PostgreSQL, plus
the dispatcher's side: ``ingest`` and ``materialize``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from typer.testing import CliRunner

from jobyard import Client
from jobyard.cli.main import app as cli_app
from jobyard.domain.auth import Role
from jobyard.domain.jobs import JobSpec
from jobyard.domain.states import JobState
from jobyard.sdk import Conflict, InvalidInput, NotFound
from jobyard.wiring import Services
from tests.conftest import LiveServer, ServicesFactory

Serve = Callable[[Services], LiveServer]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def idle(make_services: ServicesFactory, serve: Serve) -> LiveServer:
    """A server without a dispatcher: jobs inserted for a test stay queued."""
    return serve(make_services(start=False))


@pytest.fixture
def c(idle: LiveServer) -> Iterator[Client]:
    with idle.client() as client:
        yield client


def http(live: LiveServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or live.admin_key}"}
    return httpx.Client(base_url=live.url, headers=headers, timeout=10)


def test_create_list_get_delete(c: Client) -> None:
    made = c.create_folder("q3-input", description="Quarter 3")
    assert (made.name, made.description, made.file_count, made.total_bytes) == (
        "q3-input",
        "Quarter 3",
        0,
        0,
    )
    c.create_folder("a.first_1")
    assert [f.name for f in c.folders()] == ["a.first_1", "q3-input"]
    assert c.folder("q3-input").id == made.id
    assert c.folder(made.id).name == "q3-input"
    c.delete_folder("q3-input")
    with pytest.raises(NotFound):
        c.folder(made.id)
    assert [f.name for f in c.folders()] == ["a.first_1"]
    with pytest.raises(NotFound):
        c.delete_folder("q3-input")


def test_duplicate_name_409_and_invalid_names_422(idle: LiveServer, c: Client) -> None:
    c.create_folder("reports")
    with pytest.raises(Conflict) as dup:
        c.create_folder("reports")
    assert dup.value.status_code == 409
    assert "reports" in dup.value.message
    for bad in ["", "-x", ".hidden", "a b", "a/b", "x" * 201, "ünï", "ok\n"]:
        with pytest.raises(InvalidInput) as err:
            c.create_folder(bad)
        assert err.value.status_code == 422, bad
        assert err.value.details.get("field") == "name", bad
    with http(idle) as h:
        r = h.post("/v1/folders", json={"name": "x", "colour": "red"})
        assert r.status_code == 422
        assert "colour" in r.json()["message"]


def test_upload_raw_and_multipart_list_download(tmp_path: Path, c: Client) -> None:
    c.create_folder("data")
    raw = os.urandom(300_000)
    (tmp_path / "raw.bin").write_bytes(raw)
    stored = c.upload("data", tmp_path / "raw.bin", path="in/raw.bin")
    assert (stored.path, stored.size, stored.sha256) == ("in/raw.bin", len(raw), sha(raw))

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.csv").write_text("x,y\n1,2\n")
    (src / "sub" / "b.txt").write_text("bee")
    (tmp_path / "single.txt").write_text("one")
    many = c.upload_many("data", [tmp_path / "single.txt", src], prefix="batch")
    assert [f.path for f in many] == ["batch/single.txt", "batch/src/a.csv", "batch/src/sub/b.txt"]

    contents = {
        "in/raw.bin": raw,
        "batch/single.txt": b"one",
        "batch/src/a.csv": b"x,y\n1,2\n",
        "batch/src/sub/b.txt": b"bee",
    }
    files = c.folder_files("data")
    assert [f.path for f in files] == sorted(contents)
    for f in files:
        assert (f.size, f.sha256) == (len(contents[f.path]), sha(contents[f.path]))
    folder = c.folder("data")
    assert (folder.file_count, folder.total_bytes) == (4, sum(map(len, contents.values())))

    got = c.download("data", "in/raw.bin", tmp_path / "out.bin")
    assert got.read_bytes() == raw
    into_dir = c.download("data", "batch/src/a.csv", tmp_path)
    assert into_dir == tmp_path / "a.csv"
    assert into_dir.read_bytes() == contents["batch/src/a.csv"]

    everything = tmp_path / "everything"
    saved = c.download_folder("data", everything)
    assert sorted(p.relative_to(everything).as_posix() for p in saved) == sorted(contents)
    for path, data in contents.items():
        assert (everything / path).read_bytes() == data

    # replacing a file keeps one entry with the new content
    (tmp_path / "raw.bin").write_bytes(b"new")
    c.upload("data", tmp_path / "raw.bin", path="in/raw.bin")
    entry = next(f for f in c.folder_files("data") if f.path == "in/raw.bin")
    assert (entry.size, entry.sha256) == (3, sha(b"new"))


def test_download_headers_and_multipart_fields(idle: LiveServer, c: Client) -> None:
    c.create_folder("h")
    with http(idle) as h:
        r = h.put("/v1/folders/h/files/d%C3%A9j%C3%A0/r%C3%A9sum%C3%A9.txt", content=b"hello")
        assert r.status_code == 201
        assert r.json()["path"] == "déjà/résumé.txt"
        r = h.get("/v1/folders/h/files/d%C3%A9j%C3%A0/r%C3%A9sum%C3%A9.txt")
        assert r.status_code == 200
        assert r.content == b"hello"
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-content-sha256"] == sha(b"hello")
        assert r.headers["content-disposition"] == (
            "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt"
        )
        h.put("/v1/folders/h/files/plain.txt", content=b"p")
        r = h.get("/v1/folders/h/files/plain.txt")
        assert r.headers["content-disposition"] == 'attachment; filename="plain.txt"'

        # multipart: a single file renamed with `path`, under `prefix`
        r = h.post(
            "/v1/folders/h/files",
            files=[("files", ("local-name.txt", b"renamed"))],
            data={"path": "named.txt", "prefix": "pre/fix"},
        )
        assert r.status_code == 201, r.text
        assert [i["path"] for i in r.json()["items"]] == ["pre/fix/named.txt"]
        bad = [
            ({"path": "x"}, [("files", ("a", b"1")), ("files", ("b", b"2"))], "path"),
            ({"prefix": "../up"}, [("files", ("a", b"1"))], "prefix"),
            ({}, [("files", ("a", b"1")), ("files", ("a", b"2"))], "path"),
            ({}, [("other", ("a", b"1"))], "files"),
        ]
        for data, parts, field in bad:
            r = h.post("/v1/folders/h/files", files=parts, data=data)
            assert r.status_code == 422, (data, r.text)
            assert r.json()["details"]["field"] == field
        assert not any(f.path in ("a", "b", "x") for f in c.folder_files("h"))


def test_delete_file_and_path_conflicts(tmp_path: Path, c: Client) -> None:
    c.create_folder("f")
    (tmp_path / "x").write_bytes(b"x")
    c.upload("f", tmp_path / "x", path="dir/a.txt")
    c.upload("f", tmp_path / "x", path="top.txt")
    with pytest.raises(InvalidInput, match="conflicts"):
        c.upload("f", tmp_path / "x", path="dir")  # a directory already
    with pytest.raises(InvalidInput, match="conflicts"):
        c.upload("f", tmp_path / "x", path="top.txt/under")  # a file already
    c.delete_file("f", "dir/a.txt")
    with pytest.raises(NotFound):
        c.delete_file("f", "dir/a.txt")
    with pytest.raises(NotFound):
        c.download("f", "dir/a.txt", tmp_path / "gone")
    assert [f.path for f in c.folder_files("f")] == ["top.txt"]
    # the emptied directory is no obstacle to a file of that name
    assert c.upload("f", tmp_path / "x", path="dir").path == "dir"


def test_upload_over_the_limit_is_refused(make_services: ServicesFactory, serve: Serve) -> None:
    live = serve(make_services(start=False, max_upload_bytes=1000))
    with live.client() as c, http(live) as h:
        c.create_folder("small")
        r = h.put("/v1/folders/small/files/big.bin", content=b"x" * 1001)
        assert r.status_code == 422
        assert r.json()["details"]["field"] == "file"
        assert h.put("/v1/folders/small/files/ok.bin", content=b"x" * 1000).status_code == 201
        assert [f.path for f in c.folder_files("small")] == ["ok.bin"]
    storage = Path(live.services.storage.root)
    leftovers = [p for p in storage.rglob("*") if p.is_file() and p.name != "ok.bin"]
    assert leftovers == []


def test_upload_larger_than_one_mib(tmp_path: Path, c: Client) -> None:
    c.create_folder("big")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(data)
    assert c.upload("big", tmp_path / "big.bin").sha256 == sha(data)
    assert c.upload_many("big", [tmp_path / "big.bin"], prefix="m")[0].size == len(data)
    assert c.download("big", "big.bin", tmp_path / "back.bin").read_bytes() == data


TRAVERSALS = [
    "..%2F..%2F..%2Fcanary.txt",
    "%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "x/%2e%2e/%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "..%5C..%5Ccanary.txt",
    "a%5Cb",
    "canary%00.txt",
    "C:%5Ccanary.txt",
    "",
]


def test_path_traversal_is_refused(idle: LiveServer, c: Client, tmp_path: Path) -> None:
    folder = c.create_folder("safe")
    storage = Path(idle.services.storage.root)
    folder_dir = storage / "folders" / "default" / folder.id
    folder_dir.mkdir(parents=True, exist_ok=True)
    canaries = [
        folder_dir.parent / "canary.txt",
        storage / "folders" / "canary.txt",
        storage / "canary.txt",
        storage.parent / "canary.txt",
    ]
    for canary in canaries:
        canary.write_text("canary")
    with http(idle) as h:
        for path in TRAVERSALS:
            url = f"/v1/folders/safe/files/{path}"
            for method, kwargs in (("PUT", {"content": b"evil"}), ("GET", {}), ("DELETE", {})):
                r = h.request(method, url, **kwargs)  # type: ignore[arg-type]
                assert r.status_code == 422, (method, path, r.status_code, r.text)
                assert "path" in r.json()["message"], (method, path)
                assert r.json()["details"]["field"] == "path"
            name = unquote(path)
            if "\0" in name or name.startswith("C:"):
                # httpx sends NUL as the text %00; the multipart parser cuts IE-style
                # C:\ paths to their base name (inside the folder)
                continue
            r = h.post("/v1/folders/safe/files", files=[("files", (name or "..", b"evil"))])
            assert r.status_code == 422, (name, r.text)
    local = tmp_path / "local.txt"
    local.write_text("x")
    for sneaky in ("../canary.txt", "a/../../canary.txt", "/etc/passwd", "a\\b"):
        with pytest.raises(InvalidInput) as err:  # the SDK sends dot segments as they are
            c.upload("safe", local, path=sneaky)
        assert err.value.details["field"] == "path"
    for canary in canaries:
        assert canary.read_text() == "canary"
    assert c.folder_files("safe") == []
    assert not any(folder_dir.rglob("*"))


def test_another_tenant_sees_nothing(idle: LiveServer, c: Client, tmp_path: Path) -> None:
    services = idle.services
    services.auth.store.ensure_tenant("other", "Other", services.clock.now())
    _, other_key = services.auth.create_key(tenant_id="other", name="o", role=Role.ADMIN)
    folder = c.create_folder("private")
    (tmp_path / "s").write_bytes(b"secret")
    c.upload("private", tmp_path / "s", path="s.txt")
    with http(idle, other_key) as h:
        assert h.get("/v1/folders").json() == {"items": []}
        for ref in ("private", folder.id):
            base = f"/v1/folders/{ref}"
            attempts = [
                ("GET", base, {}),
                ("GET", f"{base}/files", {}),
                ("GET", f"{base}/files/s.txt", {}),
                ("PUT", f"{base}/files/s.txt", {"content": b"overwrite"}),
                ("POST", f"{base}/files", {"files": [("files", ("s.txt", b"o"))]}),
                ("DELETE", f"{base}/files/s.txt", {}),
                ("DELETE", base, {}),
            ]
            for method, url, kwargs in attempts:
                r = h.request(method, url, **kwargs)  # type: ignore[arg-type]
                assert r.status_code == 404, (method, url, r.text)
                assert "secret" not in r.text
        # the same name is free in another tenant
        assert h.post("/v1/folders", json={"name": "private"}).status_code == 201
    assert c.download("private", "s.txt", tmp_path / "back").read_bytes() == b"secret"
    assert [f.name for f in c.folders()] == ["private"]


def test_delete_refused_while_an_unfinished_job_uses_it(idle: LiveServer, c: Client) -> None:
    folder = c.create_folder("busy")
    store = idle.services.jobs.store
    now = idle.services.clock.now()
    job, _ = store.insert(
        tenant_id="default",
        spec=JobSpec(entrypoint="true", input_folder_id=folder.id),
        state=JobState.QUEUED,
        sort_key=0.0,
        now=now,
        request_hash=None,
        message="queued",
    )
    with pytest.raises(Conflict) as err:
        c.delete_folder("busy")
    assert err.value.status_code == 409
    assert "1 unfinished job" in err.value.message
    store.transition(job, JobState.CANCELLED, now=now, message="cancelled")
    c.delete_folder("busy")
    with pytest.raises(NotFound):
        c.folder("busy")


def test_ingest_skips_links_and_materialize_round_trips(
    idle: LiveServer, c: Client, tmp_path: Path
) -> None:
    service = idle.services.folders
    made = c.create_folder("results")
    folder = service.get_unscoped(made.id)
    assert folder is not None
    (tmp_path / "old").write_bytes(b"old")
    c.upload("results", tmp_path / "old", path="report.txt")
    c.upload("results", tmp_path / "old", path="table")  # a file where ingest brings a dir

    out = tmp_path / "output"
    (out / "table").mkdir(parents=True)
    (out / "report.txt").write_bytes(b"final report")
    (out / "table" / "part-0.csv").write_bytes(b"a,b\n")
    os.symlink("/etc/hostname", out / "leak")
    os.symlink("/etc", out / "etc-dir")
    os.symlink(out / "report.txt", out / "inner-link")
    os.mkfifo(out / "pipe")
    skipped: list[tuple[str, str]] = []

    ingested = service.ingest(folder, out, on_skip=lambda p, why: skipped.append((p, why)))

    assert sorted(f.path for f in ingested) == ["report.txt", "table/part-0.csv"]
    assert sorted(p for p, _ in skipped) == ["etc-dir", "inner-link", "leak", "pipe"]
    files = {f.path: f for f in c.folder_files("results")}
    assert sorted(files) == ["report.txt", "table/part-0.csv"]
    assert files["report.txt"].sha256 == sha(b"final report")
    assert files["table/part-0.csv"].size == 4

    dest = tmp_path / "job" / "input"
    total = service.materialize(folder, dest)
    assert total == len(b"final report") + 4
    assert (dest / "report.txt").read_bytes() == b"final report"
    assert (dest / "table" / "part-0.csv").read_bytes() == b"a,b\n"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "report.txt",
        "table/part-0.csv",
    ]
    assert service.get_unscoped("no-such-id") is None

    # a job that swaps its output directory for a link to elsewhere uploads nothing
    swapped = tmp_path / "swapped"
    os.symlink(out, swapped)
    skipped.clear()
    assert service.ingest(folder, swapped, on_skip=lambda p, why: skipped.append((p, why))) == []
    assert [p for p, _ in skipped] == ["."]


def test_cli_folders(idle: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_URL", idle.url)
    monkeypatch.setenv("JOBYARD_API_KEY", idle.admin_key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "nested").mkdir(parents=True)
    (tmp_path / "data" / "a.csv").write_text("1")
    (tmp_path / "data" / "nested" / "b.csv").write_text("22")
    (tmp_path / "c.csv").write_text("333")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli_app, ["folders", *args])
        return result.exit_code, result.output

    assert run("create", "q3-input", "--description", "inputs")[0] == 0
    assert run("create", "q3-input")[0] == 5  # 409: refused
    code, out = run("upload", "q3-input", "c.csv", "data", "--prefix", "in")
    assert code == 0, out
    assert "3 files" in out
    code, out = run("files", "q3-input")
    assert code == 0
    for path in ("in/c.csv", "in/data/a.csv", "in/data/nested/b.csv"):
        assert path in out
    code, out = run("list")
    assert "q3-input" in out and "3" in out
    assert run("upload", "q3-input", "missing.csv")[0] == 2
    assert run("download", "q3-input", "--to", "all")[0] == 0
    assert (tmp_path / "all" / "in" / "data" / "nested" / "b.csv").read_text() == "22"
    assert run("download", "q3-input", "in/c.csv", "--to", "one")[0] == 0
    assert (tmp_path / "one" / "c.csv").read_text() == "333"
    assert run("rm", "q3-input", "in/c.csv")[0] == 0
    assert run("rm", "q3-input", "in/c.csv")[0] == 5
    assert run("delete", "q3-input")[0] == 0
    assert run("files", "q3-input")[0] == 5


def test_concurrent_uploads_of_one_path_leave_one_entry(idle: LiveServer, c: Client) -> None:
    c.create_folder("race")

    def put(i: int) -> int:
        with http(idle) as h:
            return h.put("/v1/folders/race/files/same.txt", content=b"v%d" % i).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(put, range(16))) == {201}
    files = c.folder_files("race")
    assert [f.path for f in files] == ["same.txt"]
    assert files[0].size in (2, 3)
