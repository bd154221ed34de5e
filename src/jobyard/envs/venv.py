"""Virtualenvs with pip requirements, built once per requirement set and then reused.

A set's venv is ``root/<key>`` (:func:`requirements_key`), ready once it holds
``.jobyard-ready``. Venvs embed their absolute path, so one is built in place, not renamed:
the builder holds an exclusive flock on ``root/<key>.lock`` (others wait, then reuse it),
clears unmarked leftovers, runs ``python -m venv`` and pip, and writes the marker last. On
failure, cancel or timeout the directory is removed, so the next job retries cleanly.
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
from subprocess import DEVNULL, PIPE, STDOUT
from typing import IO, BinaryIO

from jobyard.errors import ExecutorError

READY_MARKER = ".jobyard-ready"
_POLL_S = 0.05
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's rule for comments in requirement files
_PIP_INSTALL = ("-m", "pip", "install", "--disable-pip-version-check", "--no-input")


class EnvSetupError(ExecutorError):
    """The job's environment could not be set up."""

    error_type = "RUNTIME_ENV_SETUP_FAILED"


class EnvSetupCancelled(EnvSetupError):
    """The environment setup was cancelled."""

    error_type = "CANCELLED"


def normalise_requirements(requirements: Sequence[str]) -> list[str]:
    """Requirement lines without comments, blanks and surrounding space, sorted."""
    return sorted(filter(None, (_COMMENT.sub("", line).strip() for line in requirements)))


@functools.cache
def _python_version(python: str) -> str:
    """``major.minor.micro`` of the interpreter ``python`` (asked once per path)."""
    if python == sys.executable:
        return sys.version.split()[0]
    argv = [python, "-c", "import sys; print(sys.version.split()[0])"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvSetupError(f"cannot run the environments' base Python {python}: {exc}") from exc
    return out.stdout.strip()


def requirements_key(requirements: Sequence[str], python: str) -> str:
    """Cache key of a requirement set for ``python``: independent of order, blanks, comments."""
    text = "\n".join([_python_version(python), *normalise_requirements(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class VenvCache:
    """Virtualenvs under ``root`` made from the interpreter ``python``."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = Path(root).absolute()  # venvs and the returned path must be absolute
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

        Progress and pip's output are appended to ``log``; ``timeout_s`` bounds the whole
        call (waiting for another builder too). Raises :class:`EnvSetupError` (pip failed,
        timeout) or :class:`EnvSetupCancelled` (``cancel`` was set)."""
        reqs = normalise_requirements(requirements)
        key = requirements_key(reqs, self.python)
        env_dir = self.root / key
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log.open("ab")) if isinstance(log, Path) else log
            step = _Steps(out, cancel, deadline)
            if not (env_dir / READY_MARKER).exists():
                self.root.mkdir(parents=True, exist_ok=True)
                with step.locked(self.root / f"{key}.lock"):
                    if not (env_dir / READY_MARKER).exists():  # nobody built it meanwhile
                        self._build(env_dir, key, reqs, step, pip_args)
                        return env_dir / "bin" / "python"
            step.say(f"jobyard: reusing cached environment {key}")
        return env_dir / "bin" / "python"

    def _build(
        self, env_dir: Path, key: str, reqs: list[str], step: _Steps, pip_args: Sequence[str]
    ) -> None:
        shutil.rmtree(env_dir, ignore_errors=True)  # lock held: a leftover of a crashed build
        step.say(f"jobyard: creating environment {key} with {len(reqs)} requirements")
        try:
            if step.run([self.python, "-m", "venv", str(env_dir)]) != 0:
                raise EnvSetupError("python -m venv failed; see the job log")
            if reqs:
                req_file = env_dir / "jobyard-requirements.txt"
                req_file.write_text("".join(f"{line}\n" for line in reqs))
                pip = [f"{env_dir}/bin/python", *_PIP_INSTALL, *pip_args, "-r", str(req_file)]
                step.say(f"jobyard: {shlex.join(pip)}")
                if (code := step.run(pip)) != 0:
                    raise EnvSetupError(
                        "pip could not install the environment's requirements "
                        f"(exit code {code}); see the job log"
                    )
            (env_dir / READY_MARKER).write_text(f"{key}\n")
        except BaseException as exc:
            shutil.rmtree(env_dir, ignore_errors=True)
            step.say(f"jobyard: environment {key} failed: {exc}")
            raise
        step.say(f"jobyard: environment {key} is ready")


class _Steps:
    """The log, cancel event and deadline of one :meth:`VenvCache.ensure` call."""

    def __init__(self, out: IO[bytes], cancel: threading.Event | None, deadline: float | None):
        self.out = out
        self.cancel = cancel
        self.deadline = deadline

    def say(self, line: str) -> None:
        self.out.write(f"{line}\n".encode())
        self.out.flush()

    def check(self) -> None:
        """Raise if the call was cancelled or its deadline has passed."""
        if self.cancel is not None and self.cancel.is_set():
            raise EnvSetupCancelled("the environment setup was cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise EnvSetupError("the environment setup timed out")

    @contextlib.contextmanager
    def locked(self, path: Path) -> Iterator[None]:
        """Hold an exclusive flock on ``path``; waiting honours cancel and deadline."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            while True:
                self.check()
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                time.sleep(_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock

    def run(self, cmd: list[str]) -> int:
        """Run ``cmd`` in its own process group with its output copied to the log; kill the
        group (and raise) on cancel or timeout. Returns the exit code."""
        self.check()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, start_new_session=True
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=self._copy, args=(proc.stdout.fileno(),), daemon=True)
        pump.start()
        try:
            while proc.poll() is None:
                self.check()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(_POLL_S)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            pump.join(timeout=5)
            if not pump.is_alive():  # else a straggler holds the pipe open: leave it be
                proc.stdout.close()
        return proc.returncode

    def _copy(self, fd: int) -> None:
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            self.out.write(chunk)
            self.out.flush()
