"""Virtualenvs for pip requirements, built once per requirement set and reused.

The venv of a requirement set lives in ``root/<key>`` (:func:`requirements_key`) and is
ready once ``root/<key>/.jobyard-ready`` exists. A venv cannot be moved after creation
(``pyvenv.cfg``, script shebangs and ``activate`` embed its absolute path), so it is
built in place: the builder holds an exclusive :func:`fcntl.flock` on ``root/<key>.lock``
(other threads and processes wanting the same key wait, then find it ready), removes any
unmarked leftover of a crashed build, runs ``python -m venv`` and pip there, and writes the
marker only after both succeeded. On any failure, cancel or timeout the directory is
removed, so a half-built venv is never marked ready and the next job retries cleanly.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from jobyard.errors import ExecutorError

READY_MARKER = ".jobyard-ready"
_POLL_S = 0.05
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule for comments in requirement files


class EnvSetupError(ExecutorError):
    """The job's environment could not be set up."""

    code = "RUNTIME_ENV_SETUP_FAILED"
    error_type = "RUNTIME_ENV_SETUP_FAILED"


class EnvSetupCancelled(EnvSetupError):
    """The environment setup was cancelled."""

    error_type = "CANCELLED"


def normalise_requirements(requirements: Sequence[str]) -> list[str]:
    """Requirement lines without comments, blanks and surrounding space, sorted."""
    lines = (_COMMENT.sub("", line).strip() for line in requirements)
    return sorted(line for line in lines if line)


@functools.lru_cache(maxsize=None)
def _python_version(python: str) -> str:
    """``major.minor.micro`` of the interpreter ``python`` (asked once per path)."""
    if python == sys.executable:
        return "{}.{}.{}".format(*sys.version_info[:3])
    out = subprocess.run(  # noqa: S603 - a configured interpreter, no shell
        [python, "-c", "import sys;print('{}.{}.{}'.format(*sys.version_info[:3]))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return out.stdout.strip()


def requirements_key(requirements: Sequence[str], python: str) -> str:
    """Cache key of a requirement set for ``python``: independent of order, blanks, comments."""
    text = "\n".join([_python_version(python), *normalise_requirements(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class VenvCache:
    """Virtualenvs under ``root`` made from the interpreter ``python``."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.python = python

    def ensure(
        self,
        requirements: Sequence[str],
        log: BinaryIO | Path,
        *,
        cancel: threading.Event | None = None,
        pip_args: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> Path:
        """The ``bin/python`` of a ready venv with ``requirements``, building it if needed.

        Progress and pip's output are appended to ``log``. ``timeout_s`` bounds the whole
        call, waiting for another builder included. Raises :class:`EnvSetupError` (pip
        failed, timeout) or :class:`EnvSetupCancelled` (``cancel`` was set).
        """
        reqs = normalise_requirements(requirements)
        key = requirements_key(reqs, self.python)
        env_dir = self.root / key
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with _open_log(log) as out:
            if (env_dir / READY_MARKER).exists():
                _say(out, f"jobyard: reusing cached environment {key}")
                return env_dir / "bin" / "python"
            self.root.mkdir(parents=True, exist_ok=True)
            with _locked(self.root / f"{key}.lock", cancel, deadline):
                if (env_dir / READY_MARKER).exists():
                    _say(out, f"jobyard: reusing cached environment {key}")
                    return env_dir / "bin" / "python"
                shutil.rmtree(env_dir, ignore_errors=True)  # leftover of a crashed build
                try:
                    self._build(env_dir, key, reqs, out, cancel, deadline, pip_args)
                except BaseException:
                    shutil.rmtree(env_dir, ignore_errors=True)
                    raise
        return env_dir / "bin" / "python"

    def _build(
        self, env_dir: Path, key: str, reqs: list[str], out: IO[bytes],
        cancel: threading.Event | None, deadline: float | None, pip_args: Sequence[str],
    ) -> None:
        _say(out, f"jobyard: creating environment {key} with {len(reqs)} requirements")
        venv_cmd = [self.python, "-m", "venv", str(env_dir)]
        if _run(venv_cmd, out, cancel, deadline) != 0:
            raise EnvSetupError("could not create the environment's virtualenv; see the job log")
        python = env_dir / "bin" / "python"
        if reqs:
            req_file = env_dir / "jobyard-requirements.txt"
            req_file.write_text("".join(f"{line}\n" for line in reqs))
            pip_cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                       "--no-input", *pip_args, "-r", str(req_file)]
            _say(out, f"jobyard: {shlex.join(pip_cmd)}")
            code = _run(pip_cmd, out, cancel, deadline)
            if code != 0:
                raise EnvSetupError(
                    "pip could not install the environment's requirements "
                    f"(exit code {code}); see the job log"
                )
        (env_dir / READY_MARKER).write_text(f"{key}\n")
        _say(out, f"jobyard: environment {key} is ready")


@contextlib.contextmanager
def _open_log(log: BinaryIO | Path) -> Iterator[IO[bytes]]:
    if isinstance(log, Path):
        with log.open("ab") as f:
            yield f
    else:
        yield log


def _say(out: IO[bytes], line: str) -> None:
    out.write(f"{line}\n".encode())
    out.flush()


def _check(cancel: threading.Event | None, deadline: float | None) -> None:
    """Raise if ``cancel`` is set or ``deadline`` has passed."""
    if cancel is not None and cancel.is_set():
        raise EnvSetupCancelled("the environment setup was cancelled")
    if deadline is not None and time.monotonic() >= deadline:
        raise EnvSetupError("the environment setup timed out")


@contextlib.contextmanager
def _locked(path: Path, cancel: threading.Event | None, deadline: float | None) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; waiting for it honours cancel and deadline."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            _check(cancel, deadline)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def _run(cmd: list[str], out: IO[bytes], cancel: threading.Event | None,
         deadline: float | None) -> int:
    """Run ``cmd`` in its own process group, output into ``out``; kill the group on
    cancel or timeout (then raise). Returns the exit code."""
    _check(cancel, deadline)
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pump = threading.Thread(target=_copy, args=(proc.stdout, out), daemon=True)
    pump.start()
    try:
        while proc.poll() is None:
            _check(cancel, deadline)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(_POLL_S)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        pump.join(timeout=5)
        proc.stdout.close()
    return proc.returncode


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    for chunk in iter(lambda: src.read1(65536), b""):  # type: ignore[attr-defined]
        dst.write(chunk)
        dst.flush()
