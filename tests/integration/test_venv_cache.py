"""The virtualenv cache against real ``python -m venv`` and pip, offline.

pip installs from a wheel written by hand into a temporary directory (``--no-index
--find-links``); the operator's pip configuration is switched off so the tests are hermetic.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from jobyard.envs.venv import (
    READY_MARKER,
    EnvSetupCancelled,
    EnvSetupError,
    VenvCache,
    requirements_key,
)
from jobyard.errors import ExecutorError

WHEEL_FILES = {
    "mypkg/__init__.py": "VALUE = 42\n",
    "mypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n",
    "mypkg-1.0.dist-info/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: jobyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``mypkg-1.0-py3-none-any.whl`` (``mypkg.VALUE == 42``)."""
    directory = tmp_path_factory.mktemp("wheels")
    record = []
    with zipfile.ZipFile(directory / "mypkg-1.0-py3-none-any.whl", "w") as whl:
        for name, text in WHEEL_FILES.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}\n")
            whl.writestr(name, data)
        record.append("mypkg-1.0.dist-info/RECORD,,\n")
        whl.writestr("mypkg-1.0.dist-info/RECORD", "".join(record))
    return directory


@pytest.fixture(autouse=True)
def hermetic_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pip configuration from the machine (config files, ``PIP_*`` variables)."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@pytest.fixture
def pip_args(wheel_dir: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheel_dir)]


def run_python(python: Path, code: str) -> str:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def processes_using(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions ``path``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(path) in arg for arg in cmdline):
            found.append(proc)
    return found


def test_requirements_key_ignores_order_blanks_and_comments() -> None:
    key = requirements_key(["b==2", "a==1"], sys.executable)
    assert len(key) == 16 and int(key, 16) >= 0
    assert requirements_key(["", "  a==1 ", "# pinned", "b==2  # why", "\n"], sys.executable) == key
    assert requirements_key(["a==1"], sys.executable) != key
    assert requirements_key(["a==1", "b==3"], sys.executable) != key
    # Another path to an interpreter of the same version (asked in a subprocess): same key.
    assert requirements_key(["a==1", "b==2"], os.path.realpath(sys.executable)) == key


def test_creates_env_once_and_reuses_it(tmp_path: Path, pip_args: list[str]) -> None:
    cache = VenvCache(tmp_path / "envs")
    log = tmp_path / "job1.log"
    python = cache.ensure(["mypkg==1.0"], log, pip_args=pip_args)

    key = requirements_key(["mypkg==1.0"], sys.executable)
    assert python == tmp_path / "envs" / key / "bin" / "python"
    assert (python.parent.parent / READY_MARKER).exists()
    assert run_python(python, "import mypkg; print(mypkg.VALUE)") == "42"
    assert run_python(python, "import sys; print(sys.prefix)") == str(python.parent.parent)
    text = log.read_text()
    assert f"jobyard: creating environment {key} with 1 requirements" in text
    assert "pip install --disable-pip-version-check --no-input --no-index" in text
    assert "Successfully installed mypkg-1.0" in text

    sentinel = python.parent.parent / "sentinel"
    sentinel.write_text("untouched")
    before = sentinel.stat().st_mtime_ns
    log2 = tmp_path / "job2.log"
    again = VenvCache(tmp_path / "envs").ensure(
        ["", "  mypkg==1.0  ", "# c"], log2, pip_args=pip_args
    )
    assert again == python
    assert log2.read_text() == f"jobyard: reusing cached environment {key}\n"
    assert sentinel.read_text() == "untouched" and sentinel.stat().st_mtime_ns == before


def test_failed_install_is_cleaned_up_and_a_later_build_works(
    tmp_path: Path, pip_args: list[str]
) -> None:
    root = tmp_path / "envs"
    cache = VenvCache(root)
    log = tmp_path / "bad.log"
    with pytest.raises(EnvSetupError) as info:
        cache.ensure(["doesnotexist==9.9"], log, pip_args=pip_args)
    assert isinstance(info.value, ExecutorError)
    assert info.value.error_type == "RUNTIME_ENV_SETUP_FAILED"
    assert "pip could not install the environment's requirements (exit code 1)" in str(info.value)
    text = log.read_text()
    assert "No matching distribution found for doesnotexist==9.9" in text
    assert "failed: pip could not install" in text
    bad_key = requirements_key(["doesnotexist==9.9"], sys.executable)
    assert not (root / bad_key).exists()

    # A crashed build left an unmarked directory for the good set: it is rebuilt, not trusted.
    good_key = requirements_key(["mypkg==1.0"], sys.executable)
    (root / good_key / "bin").mkdir(parents=True)
    (root / good_key / "junk").write_text("half-built")
    python = cache.ensure(["mypkg==1.0"], tmp_path / "good.log", pip_args=pip_args)
    assert run_python(python, "import mypkg; print(mypkg.VALUE)") == "42"
    assert not (root / good_key / "junk").exists()
    assert "creating environment" in (tmp_path / "good.log").read_text()

    # The failure was not cached either: the bad set runs pip again.
    with pytest.raises(EnvSetupError):
        cache.ensure(["doesnotexist==9.9"], log, pip_args=pip_args)
    assert log.read_text().count("creating environment") == 2


def test_concurrent_ensure_builds_once(tmp_path: Path, pip_args: list[str]) -> None:
    root = tmp_path / "envs"
    logs = [io.BytesIO(), io.BytesIO()]
    barrier = threading.Barrier(2)

    def ensure(i: int) -> Path:
        barrier.wait()
        reqs = ["mypkg==1.0"] if i == 0 else ["  mypkg==1.0", ""]
        return VenvCache(root).ensure(reqs, logs[i], pip_args=pip_args)

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(ensure, [0, 1]))

    assert paths[0] == paths[1]
    texts = [log.getvalue().decode() for log in logs]
    assert sum(t.count("creating environment") for t in texts) == 1
    assert sum(t.count("reusing cached environment") for t in texts) == 1
    assert sum(t.count("Successfully installed mypkg-1.0") for t in texts) == 1
    assert run_python(paths[0], "import mypkg; print(mypkg.VALUE)") == "42"


def test_preset_cancel_starts_nothing(tmp_path: Path, pip_args: list[str]) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(EnvSetupCancelled) as info:
        VenvCache(tmp_path / "envs").ensure(
            ["mypkg==1.0"], tmp_path / "job.log", cancel=cancel, pip_args=pip_args
        )
    assert info.value.error_type == "CANCELLED"
    assert list((tmp_path / "envs").iterdir()) == [
        tmp_path / "envs" / f"{requirements_key(['mypkg==1.0'], sys.executable)}.lock"
    ]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_stopping_a_build_kills_it_and_cleans_up(
    tmp_path: Path, pip_args: list[str], how: str
) -> None:
    root = tmp_path / "envs"
    env_dir = root / requirements_key(["mypkg==1.0"], sys.executable)
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(EnvSetupError) as info:
            VenvCache(root).ensure(
                ["mypkg==1.0"],
                tmp_path / "job.log",
                pip_args=pip_args,
                cancel=cancel if how == "cancel" else None,
                timeout_s=0.5 if how == "timeout" else None,
            )
    finally:
        timer.cancel()
    assert time.monotonic() - started < 3.0  # `python -m venv` alone takes longer
    expected = "CANCELLED" if how == "cancel" else "RUNTIME_ENV_SETUP_FAILED"
    assert info.value.error_type == expected
    assert ("cancelled" if how == "cancel" else "timed out") in str(info.value)
    assert not env_dir.exists()
    assert processes_using(env_dir) == []
    assert "creating environment" in (tmp_path / "job.log").read_text()


def test_waiting_for_another_builder_honours_the_timeout(
    tmp_path: Path, pip_args: list[str]
) -> None:
    root = tmp_path / "envs"
    root.mkdir()
    key = requirements_key(["mypkg==1.0"], sys.executable)
    with open(root / f"{key}.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process is building this env
        log = tmp_path / "job.log"
        with pytest.raises(EnvSetupError, match="timed out") as info:
            VenvCache(root).ensure(["mypkg==1.0"], log, pip_args=pip_args, timeout_s=0.3)
    assert type(info.value) is EnvSetupError
    assert not (root / key).exists()
    assert "creating environment" not in log.read_text()
