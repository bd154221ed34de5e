"""Models running as jobs, end to end through HTTP (SDK) on both databases: notebooks
with parameters and results, Zeppelin notes, environments, folders and roles."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from jobyard import Client
from jobyard.sdk import errors as sdk_errors
from tests.conftest import GATES, LiveServer, wait_for
from tests.support.wheels import build_wheel

FIXTURES = Path(__file__).parent.parent / "fixtures"
PY = sys.executable


def _events(client: Client, job_id: str, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e.data for e in client.events(job_id) if e.kind == kind]


def test_notebook_job_with_parameters_folders_and_results(client: Client, tmp_path: Path) -> None:
    client.create_model("churn", description="churn scoring")
    version = client.push_version(
        "churn",
        "1.0.0",
        FIXTURES / "notebooks" / "params.ipynb",
        input_roles=["customers:csv:required"],
        output_roles=["scores:csv"],
    )
    assert version.kind == "notebook"
    client.create_folder("q3-input")
    (tmp_path / "customers.csv").write_text("id\n1\n2\n")
    client.upload("q3-input", tmp_path / "customers.csv")
    client.create_folder("q3-output")
    job = client.submit(
        model="churn:1.0.0",
        input_folder="q3-input",
        output_folder="q3-output",
        parameters={"threshold": 0.9, "rows": 5},
    )
    done = client.wait(job.id, timeout=90)
    assert done.status == "succeeded", done.message
    assert done.model_version_id == version.id
    assert done.model_sha256 == version.artifact.sha256  # type: ignore[union-attr]
    assert "threshold=0.9" in client.logs(job.id)
    res = client.results(job.id)
    files = {a.path: a for a in res.artifacts or []}
    assert files["scores.csv"].record_count == 5
    assert files["scores.csv"].role == "scores"
    assert res.primary_output is not None and res.primary_output.path == "scores.csv"
    assert any(a.type == "notebook" for a in files.values())  # the executed notebook
    cells = _events(client, job.id, "cell")
    assert [c["status"] for c in cells if c["index"] == 1] == ["started", "succeeded"]
    assert "scores.csv" in [f.path for f in client.folder_files("q3-output")]
    out = tmp_path / "out"
    client.download_results(job.id, out)
    assert (out / "scores.csv").read_text().count("\n") == 6


@pytest.mark.parametrize("keep_going", [False, True])
def test_zeppelin_failing_sh_paragraph(client: Client, keep_going: bool) -> None:
    client.create_model("note")
    client.push_version("note", "1", FIXTURES / "notes" / "failing_sh.zpln")
    job = client.submit(model="note:1", continue_on_error=keep_going)
    done = client.wait(job.id, timeout=90)
    assert done.status == "failed"
    assert 'paragraph 2 ("export")' in (done.message or "")
    assert ("after" in client.logs(job.id)) is keep_going
    statuses = {p["index"]: p["status"] for p in _events(client, job.id, "paragraph")}
    assert statuses[1] == "succeeded" and statuses[2] == "failed"
    assert (statuses.get(3) == "succeeded") is keep_going


def test_cancel_during_notebook_keeps_partial_outputs(client: Client) -> None:
    client.create_model("slow")
    client.push_version("slow", "1", FIXTURES / "notebooks" / "slow.ipynb")
    job = client.submit(model="slow:1")
    wait_for(
        lambda: any(
            c["index"] == 1 and c["status"] == "started" for c in _events(client, job.id, "cell")
        ),
        timeout=60,
    )
    client.cancel(job.id, reason="enough")
    done = client.wait(job.id, timeout=30)
    assert done.status == "cancelled"
    res = client.results(job.id)
    assert res.partial is True
    paths = [a.path for a in res.artifacts or []]
    assert "partial.txt" in paths
    assert any(p.endswith(".executed.ipynb") for p in paths)


def test_environment_concurrency_limit_makes_the_second_job_wait(
    client: Client, tmp_path: Path
) -> None:
    client.create_environment("single", env_vars={"REGION": "eu"}, max_concurrent_jobs=1)
    barrier = tmp_path / GATES / "go"
    code = f"import os,time\nprint(os.environ['REGION'], flush=True)\nwhile not os.path.exists({str(barrier)!r}): time.sleep(0.02)"
    first = client.submit([PY, "-c", code], environment="single")
    wait_for(lambda: client.get(first.id).status == "running")
    second = client.submit([PY, "-c", code], environment="single")
    other = client.submit([PY, "-c", "print('free')"])  # another environment still runs
    assert client.wait(other.id, timeout=30).status == "succeeded"
    waiting = client.get(second.id)
    assert waiting.status == "queued"
    assert "concurrency_limit" in (waiting.pending_reason or "")
    assert "'single'" in (waiting.pending_reason or "")
    barrier.touch()
    assert client.wait(first.id, timeout=30).status == "succeeded"
    assert client.wait(second.id, timeout=30).status == "succeeded"
    assert client.logs(second.id).startswith("eu")


def test_cached_virtualenv_is_reused(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    wheel = build_wheel(tmp_path)
    client.create_environment("withpkg", pip=[f"mypkg @ {wheel.as_uri()}"], max_concurrent_jobs=2)
    code = "import mypkg, sys; print('value', mypkg.VALUE, sys.prefix)"
    first = client.submit(["python", "-c", code], environment="withpkg")
    done = client.wait(first.id, timeout=180)
    assert done.status == "succeeded", client.logs(first.id)
    log1 = client.logs(first.id)
    assert "value 42" in log1 and "creating environment" in log1
    second = client.submit(["python", "-c", code], environment="withpkg")
    assert client.wait(second.id, timeout=60).status == "succeeded"
    log2 = client.logs(second.id)
    assert "reusing cached environment" in log2 and "creating environment" not in log2
    assert log1.split("value 42 ")[1].split()[0] == log2.split("value 42 ")[1].split()[0]
    client.create_environment("broken", pip=[f"nothere @ {(tmp_path / 'missing.whl').as_uri()}"])
    bad = client.submit(["python", "-c", "print(1)"], environment="broken")
    failed = client.wait(bad.id, timeout=120)
    assert failed.status == "failed"
    assert failed.error_type == "RUNTIME_ENV_SETUP_FAILED"
    assert "missing.whl" in client.logs(bad.id)


def test_roles_and_parameter_schema(live: LiveServer, client: Client, tmp_path: Path) -> None:
    client.create_model("scorer")
    script = tmp_path / "score.py"
    script.write_text(
        "import json,os\np=json.load(open('parameters.json'))\n"
        "print(sorted(os.listdir('input/customers')), p['threshold'], p['region'])\n"
        "print('mode', oct(os.stat('input/customers/a.csv').st_mode & 0o777))\n"
        "try:\n    open('input/customers/x', 'w').write('job wrote this')\nexcept OSError:\n"
        "    print('refused')\n"
    )
    client.push_version(
        "scorer",
        "2.0",
        script,
        input_roles=["customers:csv:required", "region:text:optional"],
        parameters_schema={
            "type": "object",
            "properties": {"threshold": {"type": "number", "maximum": 1}},
        },
        default_parameters={"threshold": 0.5},
    )
    client.create_folder("cust")
    (tmp_path / "a.csv").write_text("x\n")
    client.upload("cust", tmp_path / "a.csv")
    with pytest.raises(sdk_errors.InvalidInput) as info:
        client.submit(
            model="scorer:2.0",
            role_bindings=[{"role": "customers", "folder": "cust"}],
            parameters={"threshold": 1.5},
        )
    assert "parameters.threshold" in info.value.message
    with pytest.raises(sdk_errors.InvalidInput) as info:
        client.submit(model="scorer:2.0")
    assert "customers" in info.value.message and "not bound" in info.value.message
    with pytest.raises(sdk_errors.InvalidInput) as info:
        client.submit(model="scorer:2.0", role_bindings=[{"role": "nosuch", "value": 1}])
    assert "nosuch" in info.value.message
    with pytest.raises(sdk_errors.InvalidInput) as info:
        client.submit(
            model="scorer:2.0",
            output_folder="does-not-exist",
            role_bindings=[{"role": "customers", "folder": "cust"}],
        )
    assert "output_folder" in info.value.message
    job = client.submit(
        model="scorer:2.0",
        role_bindings=[{"role": "customers", "folder": "cust"}, {"role": "region", "value": "eu"}],
    )
    done = client.wait(job.id, timeout=30)
    log = client.logs(job.id)
    assert done.status == "succeeded"
    assert "['a.csv'] 0.5 eu" in log
    assert "mode 0o444" in log  # read-only copies (root ignores modes: see docs/how-to/folders.md)
    # the sandbox mounts the inputs read-only and runs the job as an unprivileged user
    assert ("refused" in log) is (os.geteuid() != 0 or live.services.sandbox.sandboxed)
    assert [f.path for f in client.folder_files("cust")] == ["a.csv"]  # the folder is untouched


def test_input_folder_is_a_copy(client: Client, tmp_path: Path) -> None:
    client.create_folder("src")
    (tmp_path / "d.txt").write_text("data")
    client.upload("src", tmp_path / "d.txt", path="sub/d.txt")
    job = client.submit("cat input/sub/d.txt; echo $JOBYARD_INPUT_DIR", input_folder="src")
    assert client.wait(job.id, timeout=30).status == "succeeded"
    log = client.logs(job.id)
    assert "input folder 'src' copied (4 bytes)" in log
    assert "\ndata/" in log and log.rstrip().endswith("/work/input")
