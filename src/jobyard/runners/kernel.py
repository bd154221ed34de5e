"""Shared pieces of the notebook runners: kernel launch, parameter injection, output
printing and SIGTERM handling.

The ``python3`` kernel always means ipykernel in the interpreter running the runner
(``sys.executable -m ipykernel_launcher``), so it works in a plain virtualenv with no
kernelspec installed and sees the job's packages; other kernel names are looked up
through jupyter_client as usual.
"""

from __future__ import annotations

import contextlib
import io
import json
import keyword
import math
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager

from jobyard.markers import emit

PYTHON_KERNEL = "python3"
EXIT_TERMINATED = 143  #: 128 + SIGTERM
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


class CurrentPythonSpecs(KernelSpecManager):
    """Kernel specs where ``python3`` is ipykernel in this interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == PYTHON_KERNEL:
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (jobyard)",
                language="python",
                interrupt_mode="signal",
            )
        spec: KernelSpec = super().get_kernel_spec(kernel_name)
        return spec


def _options(name: str, ipc_dir: str | None) -> dict[str, Any]:
    """Manager options: ipykernel talks over Unix sockets in ``ipc_dir`` when given (a
    private directory; no TCP ports, and no "running over TCP without encryption")."""
    options: dict[str, Any] = {"kernel_name": name, "kernel_spec_manager": CurrentPythonSpecs()}
    if ipc_dir is not None and name == PYTHON_KERNEL:
        options.update(transport="ipc", ip=os.path.join(ipc_dir, "kernel"))
    return options


def async_kernel_manager(
    name: str = PYTHON_KERNEL, ipc_dir: str | None = None
) -> AsyncKernelManager:
    """An (unstarted) asyncio kernel manager for ``name``, as nbclient wants."""
    return AsyncKernelManager(**_options(name, ipc_dir))


def start_kernel(
    cwd: str, ipc_dir: str | None = None
) -> tuple[KernelManager, BlockingKernelClient]:
    """Start the python3 kernel in ``cwd``; its manager and a ready client."""
    km = KernelManager(**_options(PYTHON_KERNEL, ipc_dir))
    km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
    except BaseException:
        stop_kernel(km, kc, now=True)
        raise
    kc.allow_stdin = False
    return km, kc


def stop_kernel(km: KernelManager, kc: BlockingKernelClient, *, now: bool = False) -> None:
    """Close the client's channels and shut the kernel down (quietly if it is gone)."""
    kc.stop_channels()
    with contextlib.suppress(RuntimeError):
        km.shutdown_kernel(now=now)


def kernel_signaller(km: KernelManager | AsyncKernelManager) -> Callable[[bool], None]:
    """A stop function for :class:`Terminator`: SIGINT the kernel, or SIGKILL it if forced.

    The kernel leads its own session, so its process group is signalled directly
    (signal-safe: no asyncio, no locks).
    """

    def stop(force: bool) -> None:
        pgid = getattr(km.provisioner, "pgid", None) or getattr(km.provisioner, "pid", None)
        if isinstance(pgid, int) and pgid > 0:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL if force else signal.SIGINT)

    return stop


def process_stopper(pid: int) -> Callable[[bool], None]:
    """A stop function for :class:`Terminator`: SIGTERM (SIGKILL if forced) process
    ``pid`` and its descendants."""

    def stop(force: bool) -> None:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for process in family:
            with contextlib.suppress(psutil.Error):
                process.kill() if force else process.terminate()

    return stop


@dataclass
class Execution:
    """The outcome of running code in a kernel with :func:`execute`."""

    error: str | None = None  #: "<ename>: <evalue>", None on success
    text: str = ""  #: the text printed for it (streams, results, tracebacks)
    images: list[str] = field(default_factory=list)  #: base64 PNGs it displayed


def execute(
    km: KernelManager, kc: BlockingKernelClient, code: str, out: Output, *, history: bool = True
) -> Execution:
    """Run ``code`` in the kernel, printing its output as it arrives."""
    msg_id = kc.execute(code, store_history=history, allow_stdin=False, stop_on_error=True)
    result = Execution()
    chunks: list[str] = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            if not km.is_alive():
                result.error = "DeadKernelError: the kernel died"
                break
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
            break
        if msg["msg_type"] == "error":
            result.error = f"{content.get('ename')}: {content.get('evalue')}"
        png = (content.get("data") or {}).get("image/png")
        if isinstance(png, str):
            result.images.append(png)
        text = message_text(msg)
        out.write(text)
        chunks.append(text)
    result.text = "".join(chunks)
    return result


def message_text(msg: Mapping[str, Any]) -> str:
    """The text to show for one iopub message: stream text, plain results, tracebacks."""
    kind, content = msg.get("msg_type"), msg.get("content") or {}
    if kind == "stream":
        return str(content.get("text", ""))
    if kind == "error":
        lines = content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]
        return _ANSI.sub("", "\n".join(lines)) + "\n"
    if kind in ("execute_result", "display_data"):
        data = content.get("data") or {}
        if "text/plain" in data:
            return str(data["text/plain"]) + "\n"
        return f"[{', '.join(sorted(data))}]\n" if data else ""
    return ""


def load_parameters(path: str | None) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when no path is given)."""
    if path is None:
        return {}
    value = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the parameters must be a JSON object")
    return value


def py_literal(value: Any) -> str:
    """Python source for a JSON value (``repr``, with non-finite floats spelled out)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    return repr(value)


def parameter_source(params: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Code assigning each parameter (papermill style) and the names that were skipped
    because they are not valid Python identifiers."""
    lines, skipped = ["# Parameters (injected by jobyard)"], []
    for name, value in params.items():
        if name.isidentifier() and not keyword.iskeyword(name):
            lines.append(f"{name} = {py_literal(value)}")
        else:
            skipped.append(name)
    return "\n".join(lines) + "\n", skipped


def first_line(source: str, limit: int = 80) -> str:
    """The first non-blank line of ``source``, at most ``limit`` characters."""
    return next((line.rstrip()[:limit] for line in source.splitlines() if line.strip()), "")


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers never see a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


class Output:
    """The runner's stdout: relayed output and marker lines, each marker on its own line."""

    def __init__(self) -> None:
        self._at_line_start = True
        if isinstance(sys.stdout, io.TextIOWrapper):  # never fail on unencodable output
            sys.stdout.reconfigure(errors="backslashreplace")

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._at_line_start = text.endswith("\n")

    def line(self, text: str) -> None:
        self._end_line()
        self.write(text + "\n")

    def marker(self, type_: str, **fields: Any) -> None:
        self._end_line()
        emit(type_, **fields)
        self._at_line_start = True

    def _end_line(self) -> None:
        self.write("" if self._at_line_start else "\n")


class Terminator:
    """SIGTERM handling: remember the request and stop what runs now (through the stop
    function set with :meth:`watch`); force it after ``grace_s`` or a second SIGTERM."""

    def __init__(self, grace_s: float = 5.0) -> None:
        self.requested = False
        self.grace_s = grace_s
        self._stop: Callable[[bool], None] | None = None
        self._timer: threading.Timer | None = None

    def install(self) -> Terminator:
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def watch(self, stop: Callable[[bool], None] | None) -> None:
        """Use ``stop(force)`` to interrupt the running work (None: nothing runs)."""
        self._stop = stop
        if stop is not None and self.requested:  # SIGTERM came before the work started
            stop(False)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        force = self.requested
        self.requested = True
        self._fire(force)
        if not force and self._timer is None:
            self._timer = threading.Timer(self.grace_s, self._fire, args=(True,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, force: bool) -> None:
        stop = self._stop
        if stop is not None:
            stop(force)
