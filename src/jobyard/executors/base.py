"""The executor interface: how a node starts, watches and stops a job's process.

The dispatcher only talks to these protocols; the local executor runs a
subprocess per job, the Ray executor (``raycluster``) hands the job to a Ray cluster.
A handle of a job that runs on another host has no local process: its ``pid`` is None,
its samples are empty, and it may say why it ended without an exit code of its own
(:class:`ReportsFailure`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from jobyard.domain.jobs import ResourceUsage

_thread_marks = threading.local()


def outlives_its_processes() -> None:
    """Mark the calling thread as one that ends only after the processes it starts have
    ended (the claim loop, stopped after its attempts): an executor whose processes die
    with the thread that forked them (the sandbox's ``--die-with-parent``) may then
    start them from it directly instead of handing them to a thread of its own."""
    _thread_marks.outlives = True


def thread_outlives_its_processes() -> bool:
    """Whether :func:`outlives_its_processes` was called in the calling thread."""
    return bool(getattr(_thread_marks, "outlives", False))


@dataclass(frozen=True, kw_only=True)
class LaunchSpec:
    """Everything an executor needs to start one attempt of a job."""

    job_id: str
    attempt: int
    entrypoint: str | None  #: a command string, run through ``/bin/sh -c``
    argv: tuple[str, ...] | None  #: an argument vector, run without a shell
    workdir: Path  #: the job's private working directory (exists)
    log_path: Path  #: stdout and stderr are appended here
    env: Mapping[str, str]  #: the complete environment of the process
    user: str | None = None  #: run as this user (the server must be root), else as the server
    status_path: Path | None = None  #: where the exit status is written when the process exits
    network: bool = True  #: False: no network but a loopback interface (sandbox only)
    memory_limit_bytes: int | None = None  #: enforced by the kernel where the executor can
    cpu_slots: int = 0  #: CPU cores the job may use (0: no cap)
    #: pip requirements the executor installs where the job runs (executors that set
    #: environments up on their workers; empty when the environment was built here)
    python_requirements: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Parking:
    """Where the next attempt will most likely run, for an executor that starts its
    process ahead (:class:`Parks`): the spare job directory, made ahead."""

    workdir: Path  #: the spare's working directory (renamed, with its job directory)
    log_path: Path  #: a file beside the spare's logs for the process's output until then
    status_path: Path  #: the same for its exit status
    user: str | None  #: the user the node's jobs run as
    #: held by the executor while it mounts the directory by its path (taking the spare
    #: waits for it): from then on the mount holds the directory whatever its name
    renames: threading.Lock


@dataclass(frozen=True)
class ExecutorFailure:
    """Why an attempt ended without an exit code of its own (its cluster was lost, its
    environment could not be set up where it runs): the job's message and error type."""

    message: str
    error_type: str


class Handle(Protocol):
    """A started attempt."""

    @property
    def pid(self) -> int | None:
        """Process id of the job's main process (leader of its process group); None when
        the job runs on another host."""

    @property
    def create_time(self) -> float:
        """psutil create time of the main process (to recognise it after a restart)."""

    def wait(self, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` seconds; the exit code (negative: killed by that signal)
        once the main process has exited, else ``None``."""

    def stop(self, grace_s: float, *, force: bool = False) -> int:
        """Stop the whole process group: SIGTERM, up to ``grace_s`` for it to exit, then
        SIGKILL (at once when ``force``). Returns the exit code."""

    def sample(self) -> ResourceUsage:
        """Resource use of the process tree now; ``peak_rss_bytes`` and ``cpu_time_s``
        accumulate over the samples taken so far."""

    def cleanup(self) -> None:
        """After the main process exited: kill whatever is left of its process group."""

    @property
    def kernel_limits(self) -> bool:
        """Whether the kernel enforces the attempt's memory limit (no sampling needed)."""

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the attempt for its memory limit."""

    def pids_exhausted(self) -> int | None:
        """The process limit, if a fork of the attempt failed for reaching it."""

    def exit_fd(self) -> int | None:
        """A file descriptor that becomes readable when the main process exits (a
        pidfd), valid until :meth:`cleanup`; None if the executor has none (then the
        dispatcher waits for the process in a thread)."""


@runtime_checkable
class ReportsFailure(Protocol):
    """A handle that can tell how its attempt failed besides its exit code (optional)."""

    def failure(self) -> ExecutorFailure | None:
        """Once the attempt ended: why, when not by its own exit (else None)."""


@runtime_checkable
class Gated(Protocol):
    """An executor that can be unable to start attempts for a while (optional): a
    cluster executor whose cluster does not answer. The node claims no job meanwhile."""

    def accepting(self) -> bool:
        """Whether attempts can start now (answers fast, from a recent check)."""


@runtime_checkable
class Parks(Protocol):
    """An executor that can start the next attempt's process ahead, while a slot is idle
    (optional): :meth:`Executor.start` then only lets it go on, when the attempt runs in
    the parked directory, else discards it and starts as usual."""

    def park(self, parking: Parking) -> None:
        """Start a process for the next attempt in ``parking``'s directory, unless one is
        parked there already (returns at once; the process starts in the background)."""


class Executor(Protocol):
    """Starts attempts."""

    def start(self, spec: LaunchSpec) -> Handle:
        """Start the attempt; raises :class:`jobyard.errors.ExecutorError` with a clear
        message when the process cannot be started."""

    def kill_orphan(self, pid: int, create_time: float) -> bool:
        """Kill the process group led by ``pid`` if that process still exists with the
        same create time (left over from a previous server life). True if that process
        was still running (not if it had exited and waits, a zombie, to be reaped)."""

    def sweep(self) -> int:
        """At the node's start: kill whatever a previous life of the node left running,
        owned by a job or not; the number of processes killed."""

    def close(self) -> None:
        """At the node's stop, once its attempts have ended: release what the executor
        holds on the host (its cgroups)."""
