"""The Ray executor: each attempt runs as a Ray job on a Ray cluster, submitted through
Ray's own Jobs client (``ray.job_submission.JobSubmissionClient``, the extra
``jobyard[ray]``, imported only when this executor is used).

What is sent: the job's prepared directory as the Ray job's ``working_dir`` (with a
launch file that holds its command and environment: the job's secrets never appear in
the Ray job's ``runtime_env``, which the dashboard shows to anyone), jobyard's own code
as a ``py_modules`` entry (for the worker-side entrypoint, :mod:`raywrap`, the notebook
runners and the in-job helper), the environment's pip requirements (installed by Ray on
the worker), and ``entrypoint_num_cpus`` / ``entrypoint_memory`` from the job's slots
and its environment's memory limit.

What comes back: the Ray job's log, streamed as it grows into the attempt's log file
(so markers, ``jobyard logs -f`` and the compat APIs work as with the local executor);
its status and the exit code of its entrypoint; and the files of its ``output/``
directory, which the worker side sends framed in the log after the job exited (taken
out of the log here and unpacked into the attempt's ``output/``).

Stopping is Ray's stop: SIGTERM to the job's processes, Ray's SIGKILL after the grace
(``RAY_JOB_STOP_WAIT_TIME_S``, set per job from ``stop_grace_s``). Ray's Jobs API has
no immediate kill: a forced stop first puts a marker package named after the attempt's
secret nonce into Ray's package store, which the worker side looks for when it gets
Ray's SIGTERM (then it kills the job at once). A cluster that stops answering for
``lost_after_s`` ends its attempts as ``NODE_LOST``, as does a Ray job whose
supervisor died.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import math
import secrets
import shutil
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from jobyard.domain.jobs import ErrorType, ResourceUsage
from jobyard.errors import ExecutorError
from jobyard.executors.base import ExecutorFailure, LaunchSpec
from jobyard.executors.raywrap import FRAME, LAUNCH_DIR, LAUNCH_FILE, kill_package

log = logging.getLogger("jobyard.executors.ray")

POLL_S = 0.25  #: how often a Ray job's status is read when its log stream is not open
#: ... while its log stream is open: the stream says when the job ends (the wrapper's
#: end frame, or the stream's end), so the status is read for a lost cluster and for
#: an end without either (the wrapper killed); each read costs the dashboard too
STREAMING_POLL_S = 1.0
ENDING_POLL_S = 0.05  #: ... once the end frame came: Ray says the job ended any moment
LOST_AFTER_S = 10.0  #: a cluster that does not answer for this long has lost its jobs
MAX_OUTPUT_BYTES = 256 * 1024 * 1024  #: output files sent back per attempt
SUBMIT_RETRY_S = 60.0  #: how long a submission is retried while the cluster cannot take it
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_RAY_ERRORS_LOST = ("JOB_SUPERVISOR_ACTOR_DIED", "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE")
_RAY_ERRORS_SETUP = ("RUNTIME_ENV_SETUP_FAILURE",)
_PY_EXCLUDES = ["__pycache__", "*.pyc"]


def missing_ray_message() -> str:
    return (
        "the Ray executor needs Ray's Jobs client: install jobyard with the 'ray' extra"
        " (pip install 'jobyard[ray]')"
    )


def connect(address: str) -> Any:
    """A ``JobSubmissionClient`` for the cluster at ``address`` (``http://HEAD:8265``)."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:
        raise ExecutorError(f"{missing_ray_message()}: {e}") from None
    if "://" not in address:
        raise ExecutorError(
            f"the Ray address must be the dashboard's URL, http://HEAD:8265, not {address!r}"
        )
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, OSError) as e:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {e}") from None


def cluster_cpus(address: str) -> int:
    """The CPUs of the cluster's alive nodes (Ray's state API on the dashboard)."""
    url = address.rstrip("/") + "/api/v0/nodes?limit=10000"
    try:
        r = httpx.get(url, timeout=10.0)
        r.raise_for_status()
        nodes = r.json()["data"]["result"]["result"]
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as e:
        raise ExecutorError(f"cannot read the Ray cluster's nodes at {address}: {e}") from None
    alive = [n for n in nodes if n.get("state") == "ALIVE"]
    cpus = sum(float(n.get("resources_total", {}).get("CPU", 0)) for n in alive)
    return max(1, int(cpus))


class _OutputFrames:
    """Takes the framed output lines of one attempt out of its log text."""

    def __init__(self, nonce: str) -> None:
        self._prefix = f"{FRAME}:{nonce}:"
        self._partial = ""
        self.chunks: list[bytes] = []
        self.complete = False

    def filter(self, text: str, final: bool = False) -> str:
        """The log text without the frames; a partial last line waits for the rest
        (``final``: there is no more)."""
        text = self._partial + text
        if final:
            self._partial = ""
            lines = text.split("\n")
            last = lines.pop()
        else:
            head, sep, self._partial = text.rpartition("\n")
            if not sep:
                self._partial = text
                return ""
            lines, last = head.split("\n"), ""
        kept: list[str] = []
        for line in [*lines, last]:
            at = line.find(self._prefix)
            if at < 0:
                kept.append(line)
                continue
            if at > 0:  # the job's last output had no newline
                kept.append(line[:at])
            rest = line[at + len(self._prefix) :]
            if rest.startswith("out:"):
                self.chunks.append(base64.b64decode(rest[4:]))
            elif rest == "end":
                self.complete = True
        tail = kept.pop()  # "" unless ``final`` left a line without newline
        return "".join(line + "\n" for line in kept) + tail

    def unpack(self, dest: Path) -> int:
        """Unpack the archive into ``dest`` (members that would escape it are skipped)."""
        if not self.complete or not self.chunks:
            return 0
        root = dest.resolve()
        count = 0
        with zipfile.ZipFile(io.BytesIO(b"".join(self.chunks))) as zf:
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if info.is_dir() or not target.is_relative_to(root) or target == root:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out)
                count += 1
        return count


class RayHandle:
    """One attempt as a Ray job. Its thread submits it (retrying while the cluster refuses
    for a reason of its own, up to ``SUBMIT_RETRY_S``), then watches its status; a second
    thread streams its log."""

    def __init__(
        self,
        client: Any,
        submission_id: str,
        spec: LaunchSpec,
        nonce: str,
        lost_after_s: float,
        submit: Callable[[], None],
        http: httpx.Client | None = None,
    ) -> None:
        self.client = client
        self._http = http or httpx.Client(timeout=5.0)
        self.submission_id = submission_id
        self.spec = spec
        self._nonce = nonce
        self._frames = _OutputFrames(nonce)
        self._lost_after_s = lost_after_s
        self._submit = submit
        self._lock = threading.Lock()
        self._taken = False  #: Ray accepted the submission
        self._submitted = False  #: ... and this handle knows it (a stop goes to Ray)
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._pumped = threading.Event()  #: the log stream ended
        self._log_whole = threading.Event()  #: the end frame is in the attempt's log
        self._wake = threading.Event()  #: the end frame came, or the stream ended
        self._pump_stop: Callable[[], None] | None = None
        self._streamed = 0  #: characters of the Ray job's log the stream delivered
        self._stream_whole = False  #: the stream ended by itself, at the log's end
        self._code: int | None = None
        self._failure: ExecutorFailure | None = None
        self._stop_requested: int | None = None
        self._pump = threading.Thread(target=self._run_pump, name="jobyard-ray-log", daemon=True)
        self._watch = threading.Thread(target=self._run, name="jobyard-ray", daemon=True)
        self._watch.start()

    # ---- Handle ----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None  # the job's process is on a Ray worker

    @property
    def create_time(self) -> float:
        return 0.0

    @property
    def kernel_limits(self) -> bool:
        return False

    def wait(self, timeout: float | None) -> int | None:
        self._done.wait(timeout)
        return self._code if self._done.is_set() else None

    def stop(self, grace_s: float, *, force: bool = False) -> int:
        """Ray's stop (SIGTERM, then Ray's SIGKILL after the job's grace); the exit code
        once the Ray job ended. A job still being submitted is stopped once it is."""
        with self._lock:
            self._stop_requested = -signal.SIGKILL if force else -signal.SIGTERM
            submitted = self._submitted
        self._stop_event.set()
        if submitted and not self._done.is_set():
            self._stop_ray_job(force)
        if not self._done.wait(grace_s + self._lost_after_s + SUBMIT_RETRY_S):
            raise ExecutorError(f"ray job {self.submission_id} did not stop")
        assert self._code is not None
        return self._code

    def _stop_ray_job(self, force: bool) -> None:
        try:
            if force:
                self._mark_forced()
            self.client.stop_job(self.submission_id)
        except Exception as e:  # the watch notices a lost cluster
            log.warning("ray job %s: stop failed: %s", self.submission_id, e)

    def _mark_forced(self) -> None:
        """Put the attempt's kill marker into Ray's package store (see :mod:`raywrap`)."""
        address = self.client.get_address().rstrip("/")
        url = f"{address}/api/packages/gcs/{kill_package(self._nonce)}"
        self._http.put(url, content=b"forced stop", timeout=10.0).raise_for_status()

    def sample(self) -> ResourceUsage:
        return ResourceUsage()

    def cleanup(self) -> None:
        self._pump.join(1.0)

    def oom_killed(self) -> bool:
        return False

    def pids_exhausted(self) -> int | None:
        return None

    def exit_fd(self) -> int | None:
        return None

    def failure(self) -> ExecutorFailure | None:
        return self._failure

    # ---- threads ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            failure = self._submit_until_taken()
        finally:
            shutil.rmtree(self.spec.workdir / LAUNCH_DIR, ignore_errors=True)
        if failure is not None or not self._taken:  # refused, or stopped before Ray took it
            self._end(self._stop_requested or -1, failure)
            return
        with self._lock:
            self._submitted = True
            pending = self._stop_requested
        _say(self.spec, f"jobyard: running as Ray job {self.submission_id} on {self._address()}")
        self._pump.start()
        if pending is not None:  # stopped while it was being submitted
            self._stop_ray_job(pending == -signal.SIGKILL)
        self._run_watch()

    def _submit_until_taken(self) -> ExecutorFailure | None:
        """Submit the job; None once Ray took it (``_taken``) or a stop came first, else
        why it never ran."""
        deadline = time.monotonic() + SUBMIT_RETRY_S
        pause = 0.2
        while True:
            try:
                self._submit()
                self._taken = True
                return None
            except Exception as e:
                error = e
            if not _transient(error):
                return ExecutorFailure(
                    f"The Ray cluster refused the job: {error}",
                    ErrorType.ENTRYPOINT_COMMAND_START_ERROR.value,
                )
            if time.monotonic() >= deadline:
                return ExecutorFailure(
                    f"Job was lost: the Ray cluster at {self._address()} did not take it for"
                    f" {SUBMIT_RETRY_S:g} s ({error}).",
                    ErrorType.NODE_LOST.value,
                )
            if self._stop_event.wait(pause):  # stopped before Ray took it
                return None
            pause = min(pause * 2, 2.0)

    def _address(self) -> str:
        return str(self.client.get_address()).rstrip("/")

    def _run_pump(self) -> None:
        """Append the Ray job's log to the attempt's log as it grows."""
        try:
            asyncio.run(self._pump_log())
        except asyncio.CancelledError:
            pass  # the whole log was read: the watch ended the stream
        except Exception as e:  # the watch decides what a broken stream means
            log.info("ray job %s: log stream ended: %s", self.submission_id, e)
        finally:
            self._pumped.set()
            self._wake.set()

    async def _pump_log(self) -> None:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def stop() -> None:
            loop.call_soon_threadsafe(task.cancel)

        self._pump_stop = stop
        with self.spec.log_path.open("a", encoding="utf-8") as out:
            async for chunk in self.client.tail_job_logs(self.submission_id):
                text = self._frames.filter(chunk)
                if text:
                    out.write(text)
                    out.flush()
                self._streamed += len(chunk)
                if self._frames.complete:  # raywrap's last words: the log is whole
                    self._log_whole.set()
                    self._wake.set()
            rest = self._frames.filter("", final=True)
            if rest:
                out.write(rest)
            self._stream_whole = True

    def _end_pump(self) -> None:
        """Once the Ray job ended: close the log stream, and append what it had not
        delivered yet. Ray's stream lags (its tail reads the file once a second, then
        goes through the node's agent) and closes only a second or more after the
        job's end: waiting for it cost seconds per job. The end frame says the stream
        has everything; else the rest comes from Ray's whole log (one read)."""
        stop = self._pump_stop
        if stop is not None and not self._pumped.is_set():
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                stop()
        if not self._pumped.wait(5.0) or self._log_whole.is_set() or self._stream_whole:
            return
        try:
            whole = self._logs()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            log.warning(
                "ray job %s: the end of its log could not be read: %s", self.submission_id, e
            )
            return
        text = self._frames.filter(whole[self._streamed :], final=True)
        with contextlib.suppress(OSError), self.spec.log_path.open("a", encoding="utf-8") as f:
            f.write(text)

    def _logs(self) -> str:
        """The Ray job's whole log (``GET /api/jobs/<id>/logs``)."""
        address = self.client.get_address().rstrip("/")
        headers = getattr(self.client, "_headers", None) or {}
        url = f"{address}/api/jobs/{self.submission_id}/logs"
        r = self._http.get(url, headers=headers, timeout=30.0)
        r.raise_for_status()
        return str(r.json()["logs"])

    def _run_watch(self) -> None:
        since_ok = time.monotonic()
        while True:
            if self._log_whole.is_set():  # the job is over: Ray says so any moment
                self._done.wait(ENDING_POLL_S)  # (never set here: a pause between polls)
            elif self._pumped.is_set():
                self._done.wait(POLL_S)
            else:  # the log's end frame or the stream's end come when the job ended
                self._wake.wait(STREAMING_POLL_S)
            try:
                info = self._info()
            except (httpx.HTTPError, ValueError) as e:
                if time.monotonic() - since_ok >= self._lost_after_s:
                    self._end(
                        -signal.SIGKILL,
                        ExecutorFailure(
                            f"Job was lost: the Ray cluster stopped answering ({e}).",
                            ErrorType.NODE_LOST.value,
                        ),
                    )
                    return
                continue
            since_ok = time.monotonic()
            status = str(info.get("status"))
            if status in TERMINAL:
                self._end_pump()
                self._end(*self._ending(status, info))
                return

    def _info(self) -> dict[str, Any]:
        """The Ray job's details (``GET /api/jobs/<id>``, as Ray's client reads them, but
        with a timeout: a cluster that does not answer must not hang the watch)."""
        address = self.client.get_address().rstrip("/")
        headers = getattr(self.client, "_headers", None) or {}
        r = self._http.get(f"{address}/api/jobs/{self.submission_id}", headers=headers)
        r.raise_for_status()
        info: dict[str, Any] = r.json()
        return info

    def _ending(self, status: str, info: dict[str, Any]) -> tuple[int, ExecutorFailure | None]:
        code = info.get("driver_exit_code")
        if status == "SUCCEEDED":
            return 0, None
        if status == "STOPPED":
            return self._stop_requested or -signal.SIGTERM, None
        if code is not None:
            return int(code), None
        error = str(info.get("error_type") or "")
        message = f"Ray: {info['message']}" if info.get("message") else "The Ray job failed."
        if error in _RAY_ERRORS_SETUP:
            kind = ErrorType.RUNTIME_ENV_SETUP_FAILED
        elif error in _RAY_ERRORS_LOST:
            kind = ErrorType.NODE_LOST
        else:
            kind = ErrorType.ENTRYPOINT_COMMAND_START_ERROR
        return -1, ExecutorFailure(message, kind.value)

    def _end(self, code: int, failure: ExecutorFailure | None) -> None:
        if failure is None and self.spec.workdir.is_dir():
            try:
                n = self._frames.unpack(self.spec.workdir / "output")
                if n:
                    log.debug("ray job %s: %d output files", self.submission_id, n)
            except (OSError, zipfile.BadZipFile) as e:
                _say(self.spec, f"jobyard: the job's outputs could not be received: {e}")
        elif failure is not None:
            _say(self.spec, f"jobyard: {failure.message}")
        self._code = code
        self._failure = failure
        self._done.set()


class _CodePackage:
    """jobyard's own code as the Ray jobs' ``py_modules`` entry, packaged once per server
    process: Ray's client would hash (and, if Ray lacks it, zip and upload) the whole
    directory on every submit (≈ 0.2 s of CPU each); here it is hashed and uploaded at
    the first submit and each later one passes the package's content-addressed URI
    (``gcs://_ray_pkg_<hash>.zip``), after one cheap check that Ray still has it (Ray
    deletes packages no job uses any more; then it is packaged again)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._uri: str | None = None
        self._lock = threading.Lock()

    def uri(self, client: Any) -> str:
        """The URI to put in ``py_modules`` (the directory itself for a client without
        Ray's packaging methods: Ray's client then packages it per submit)."""
        upload = getattr(client, "_upload_package_if_needed", None)
        exists = getattr(client, "_package_exists", None)
        if upload is None or exists is None:
            return self.directory
        with self._lock:
            if self._uri is not None and exists(self._uri):
                return self._uri
            self._uri = str(
                upload(
                    self.directory,
                    include_gitignore=False,
                    include_parent_dir=True,
                    excludes=_PY_EXCLUDES,
                )
            )
            log.info("jobyard's code on the Ray cluster: %s", self._uri)
            return self._uri


def _transient(error: Exception) -> bool:
    """Whether Ray refused a submission for a reason of its own that may pass (it does not
    answer, or has no agent yet after a restart: a 5xx), not because of the job."""
    if isinstance(error, (ConnectionError, OSError, TimeoutError)):
        return True
    text = str(error)
    if "No available agent" in text or "status code 5" in text:
        return True
    return type(error).__module__.startswith(("requests", "urllib3"))


def _say(spec: LaunchSpec, line: str) -> None:
    with contextlib.suppress(OSError), spec.log_path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


class RayExecutor:
    """Submits attempts to the Ray cluster at ``address``."""

    def __init__(
        self,
        address: str,
        *,
        node_id: str,
        stop_grace_s: float,
        lost_after_s: float = LOST_AFTER_S,
        sandbox: bool = True,
        client_factory: Callable[[str], Any] = connect,
    ) -> None:
        self.address = address.rstrip("/")
        self.node_id = node_id
        self.stop_grace_s = stop_grace_s
        self.lost_after_s = lost_after_s
        self.sandbox = sandbox
        self._connect = client_factory
        self.client = client_factory(self.address)
        self._accepting = True
        self._checked_at = time.monotonic()
        import jobyard

        self._jobyard_dir = str(Path(jobyard.__file__).resolve().parent)
        self._code = _CodePackage(self._jobyard_dir)
        #: one client (one TLS context, kept connections) for every status poll: a new
        #: one per poll cost more CPU than the poll itself
        self._http = httpx.Client(timeout=5.0)

    def accepting(self) -> bool:
        """Whether the cluster's dashboard answers (checked at most every second)."""
        now = time.monotonic()
        if now - self._checked_at >= 1.0:
            try:
                ok = self._http.get(f"{self.address}/api/version", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok != self._accepting:
                log.warning(
                    "the Ray cluster at %s %s", self.address, "answers" if ok else "does not answer"
                )
            self._accepting, self._checked_at = ok, now
        return self._accepting

    def submission_id(self, spec: LaunchSpec) -> str:
        return f"jobyard-{spec.job_id}-{spec.attempt}-{secrets.token_hex(3)}"

    def start(self, spec: LaunchSpec) -> RayHandle:
        """Hand the attempt to its handle, which submits it in a thread of its own (the
        upload and Ray's answer do not hold up the node's claim loop)."""
        nonce = secrets.token_hex(16)
        sid = self.submission_id(spec)
        launch_dir = spec.workdir / LAUNCH_DIR
        try:
            launch_dir.mkdir(mode=0o700, exist_ok=True)
            (launch_dir / LAUNCH_FILE).write_text(json.dumps(self._launch(spec, nonce)))
        except OSError as e:
            raise ExecutorError(f"cannot write the job's launch file: {e}") from None
        runtime_env: dict[str, Any] = {
            "working_dir": str(spec.workdir),
            "excludes": _PY_EXCLUDES,
            "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(math.ceil(self.stop_grace_s))},
        }
        if spec.python_requirements:
            runtime_env["pip"] = {"packages": list(spec.python_requirements), "pip_check": False}
        options: dict[str, Any] = {}
        if spec.cpu_slots:
            options["entrypoint_num_cpus"] = spec.cpu_slots
        if spec.memory_limit_bytes:
            options["entrypoint_memory"] = int(spec.memory_limit_bytes)
        metadata = {
            "jobyard_node": self.node_id,
            "jobyard_job": spec.job_id,
            "jobyard_attempt": str(spec.attempt),
        }

        def submit() -> None:
            runtime_env["py_modules"] = [self._code.uri(self.client)]
            self.client.submit_job(
                entrypoint="python3 -m jobyard.executors.raywrap",
                submission_id=sid,
                runtime_env=runtime_env,
                metadata=metadata,
                **options,
            )

        return RayHandle(self.client, sid, spec, nonce, self.lost_after_s, submit, self._http)

    def _launch(self, spec: LaunchSpec, nonce: str) -> dict[str, Any]:
        return {
            "argv": list(spec.argv) if spec.argv else None,
            "entrypoint": spec.entrypoint,
            "env": dict(spec.env),
            "host_workdir": str(spec.workdir),
            "host_python": sys.executable,
            "host_pylib": _host_pylib(spec),
            "network": spec.network,
            "sandbox": self.sandbox,
            "nonce": nonce,
            "ray_address": self.address,
            "grace_s": self.stop_grace_s,
            "max_output_bytes": MAX_OUTPUT_BYTES,
        }

    def kill_orphan(self, pid: int, create_time: float) -> bool:
        return False  # no local processes: a previous life's Ray jobs are swept

    def sweep(self) -> int:
        """Stop the Ray jobs a previous life of this node left running."""
        try:
            jobs = self.client.list_jobs()
        except Exception as e:
            log.warning("cannot list the Ray cluster's jobs: %s", e)
            return 0
        stopped = 0
        for job in jobs:
            meta = job.metadata or {}
            status = str(getattr(job.status, "value", job.status))
            if meta.get("jobyard_node") == self.node_id and status not in TERMINAL:
                with contextlib.suppress(Exception):
                    self.client.stop_job(job.submission_id)
                    stopped += 1
        return stopped

    def close(self) -> None:
        self._http.close()


def _host_pylib(spec: LaunchSpec) -> str:
    """The PYTHONPATH entry of the host's in-job helper (replaced on the worker)."""
    for part in spec.env.get("PYTHONPATH", "").split(":"):
        if part.endswith("/pylib"):
            return part
    return ""
