"""Run an Apache Zeppelin note as a jobyard job.

Usage::

    python -m jobyard.runners.zeppelin NOTE --parameters parameters.json \\
        --output executed.json [--continue-on-error]

NOTE is a ``note.json`` or ``.zpln`` (``paragraphs`` at the top level, or under ``note``
or ``body`` as in REST exports). Paragraphs are numbered from 1, in markers and messages.
A paragraph's interpreter is its first-line directive (``%python`` when there is none):

* ``%python``, ``%python3``, ``%ipython`` (and ``%python.python``, ``%python.ipython``)
  run in one ipykernel for the whole note, so variables persist. The parameters are set
  first: each as a variable (non-identifiers skipped with a warning), all as ``z_params``.
* ``%sh`` runs with ``/bin/sh -c``, each parameter in the environment as
  ``JOBYARD_PARAM_<NAME>`` (upper-cased, other characters as ``_``, non-strings as JSON);
  a non-zero exit status fails the paragraph.
* ``%md``, ``%markdown``, empty and disabled paragraphs are skipped; any other
  interpreter fails: ``unsupported interpreter %sql in paragraph 4 ("title")``.

Markers: ``paragraph`` (``index``, ``title``, ``interpreter``, ``status``: ``started``,
``succeeded`` / ``failed`` with ``duration_s`` and ``error``, or ``skipped`` with
``reason``), then ``note`` (``paragraphs``, ``ran``, ``failed``, ``status``) and a human
line such as ``note failed: paragraphs 2 ("load"), 4 ("export") failed``. Output is
printed as it arrives. The executed note always goes to ``--output``, each paragraph with
Zeppelin-like ``results`` and ``status`` (FINISHED, ERROR, SKIPPED, READY if not run).

Exit status: 0 all succeeded; 1 a paragraph failed; 2 unreadable NOTE or parameters;
143 SIGTERM (the running paragraph is interrupted, what ran is saved).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from jobyard.runners.kernel import (
    EXIT_TERMINATED,
    Execution,
    Output,
    Terminator,
    execute,
    first_line,
    kernel_signaller,
    load_parameters,
    parameter_source,
    process_stopper,
    py_literal,
    start_kernel,
    stop_kernel,
    write_atomic,
)

PYTHON = ("python", "python3", "ipython", "python.python", "python.ipython")
KINDS = {**dict.fromkeys(PYTHON, "python"), "sh": "sh", "md": "md", "markdown": "md"}
_DIRECTIVE = re.compile(r"\s*%([\w.-]+)(\([^)]*\))?(?=\s|$)")


@dataclass
class Paragraph:
    """One paragraph: ``interpreter`` is python, sh, md or the unsupported name."""

    index: int
    title: str | None
    interpreter: str
    body: str
    raw: dict[str, Any]

    @classmethod
    def parse(cls, index: int, raw: dict[str, Any]) -> Paragraph:
        text = str(raw.get("text") or "")
        name, body = "python", text
        if match := _DIRECTIVE.match(text):
            name, body = match.group(1), text[match.end() :]
            body = body[2:] if body.startswith("\r\n") else body[1:] if body[:1].isspace() else body
        title = str(raw["title"]) if raw.get("title") else None
        return cls(index, title, KINDS.get(name, name), body, raw)

    @property
    def label(self) -> str:
        """``2 ("export")``, or ``2`` without a title."""
        title = json.dumps(self.title, ensure_ascii=False) if self.title else None
        return f"{self.index} ({title})" if title else str(self.index)


def find_paragraphs(doc: Any) -> list[dict[str, Any]]:
    """The note's paragraph objects (top level, or under ``note`` / ``body``)."""
    holders = [doc] + [doc.get(k) for k in ("note", "body")] if isinstance(doc, dict) else []
    for holder in holders:
        if isinstance(holder, dict) and isinstance(holder.get("paragraphs"), list):
            paragraphs: list[Any] = holder["paragraphs"]
            if not all(isinstance(p, dict) for p in paragraphs):
                raise ValueError("every paragraph must be a JSON object")
            return paragraphs
    raise ValueError("no 'paragraphs' list in the note")


class NoteRun:
    """Runs the paragraphs of one note, sharing one Python kernel."""

    def __init__(self, params: dict[str, Any], out: Output, term: Terminator) -> None:
        self.params, self.out, self.term = params, out, term
        self.kernel: tuple[KernelManager, BlockingKernelClient] | None = None
        self.kernel_error: str | None = None
        self.ran = 0
        self.failed: list[tuple[Paragraph, str]] = []
        self._ipc_dir = tempfile.TemporaryDirectory(prefix="jobyard-kernel-")

    def run(self, paragraphs: list[Paragraph], keep_going: bool) -> None:
        for p in paragraphs:
            p.raw.update(status="READY", results=None)  # until it runs
        for p in paragraphs:
            if self.term.requested:
                return
            if not self.paragraph(p) and (not keep_going or self.term.requested):
                return

    def paragraph(self, p: Paragraph) -> bool:
        """Run (or skip) ``p``; False if it failed."""
        fields: dict[str, Any] = {"index": p.index, "title": p.title, "interpreter": p.interpreter}
        enabled = (p.raw.get("config") or {}).get("enabled", True) is not False
        reason = "empty" if not p.body.strip() else "markdown" if p.interpreter == "md" else None
        if reason or not enabled:
            self.out.marker("paragraph", **fields, status="skipped", reason=reason or "disabled")
            p.raw["status"] = "SKIPPED"
            return True
        if p.interpreter == "python" and self.kernel is None and self.kernel_error is None:
            self._start_kernel()  # before the marker: the start is not the paragraph's time
        self.out.marker("paragraph", **fields, status="started", source_preview=first_line(p.body))
        started = time.monotonic()
        self.ran += 1
        if p.interpreter == "python":
            result = self.python(p.body)
        elif p.interpreter == "sh":
            result = self.shell(p.body)
        else:
            error = f"unsupported interpreter %{p.interpreter} in paragraph {p.label}"
            result = Execution(error=f"{error} (supported: %python, %sh, %md)")
        duration = round(time.monotonic() - started, 3)
        messages = [{"type": "TEXT", "data": result.text}] if result.text else []
        messages += [{"type": "IMG", "data": png} for png in result.images]
        if result.error is None:
            self.out.marker("paragraph", **fields, status="succeeded", duration_s=duration)
            p.raw.update(status="FINISHED", results={"code": "SUCCESS", "msg": messages})
            return True
        error = result.error.rstrip(": ") + " (interrupted by SIGTERM)"
        error = error if self.term.requested else result.error
        self.out.line(self.failure(p, error))
        self.out.marker("paragraph", **fields, status="failed", duration_s=duration, error=error)
        messages.append({"type": "TEXT", "data": error + "\n"})
        p.raw.update(status="ERROR", results={"code": "ERROR", "msg": messages})
        self.failed.append((p, error))
        return False

    def python(self, code: str) -> Execution:
        if self.kernel is None:
            return Execution(error=self.kernel_error)
        km, kc = self.kernel
        self.term.watch(kernel_signaller(km))
        try:
            return execute(km, kc, code, self.out)
        finally:
            self.term.watch(None)

    def _start_kernel(self) -> None:
        try:
            self.kernel = start_kernel(os.getcwd(), self._ipc_dir.name)
        except Exception as e:
            self.kernel_error = f"the Python kernel did not start: {type(e).__name__}: {e}"
            return
        source, skipped = parameter_source(self.params)
        for name in skipped:
            self.out.line(
                f"warning: parameter {name!r} is not a valid Python identifier; only in z_params"
            )
        source += f"z_params = {py_literal(self.params)}\n"
        injected = execute(*self.kernel, source, self.out, history=False)
        if injected.error:
            self.kernel_error = f"injecting the parameters failed: {injected.error}"

    def shell(self, code: str) -> Execution:
        env = dict(os.environ)
        for name, value in self.params.items():
            key = "JOBYARD_PARAM_" + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
            env[key] = value if isinstance(value, str) else json.dumps(value)
        proc = subprocess.Popen(  # noqa: S603 - running the paragraph is the point
            ["/bin/sh", "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.term.watch(process_stopper(proc.pid))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        chunks: list[str] = []
        try:
            assert proc.stdout is not None
            while data := os.read(proc.stdout.fileno(), 65536):
                chunks.append(decoder.decode(data))
                self.out.write(chunks[-1])
            status = proc.wait()
        finally:
            self.term.watch(None)
        chunks.append(decoder.decode(b"", final=True))
        self.out.write(chunks[-1])
        error = None
        if status:
            error = (
                f"%sh exited with status {status}"
                if status > 0
                else f"%sh was killed by signal {-status}"
            )
        return Execution(error=error, text="".join(chunks))

    @staticmethod
    def failure(p: Paragraph, error: str) -> str:
        """What failed, naming the paragraph once."""
        named = f"paragraph {p.label}"
        return error if named in error else f"{named} failed: {error}"

    def close(self) -> None:
        if self.kernel is not None:
            stop_kernel(*self.kernel, now=self.term.requested)
            self.kernel = None
        self._ipc_dir.cleanup()

    def summarize(self, total: int) -> int:
        """Print the ``note`` marker and the human line; the exit status."""
        failed = [p.index for p, _ in self.failed]
        status = "terminated" if self.term.requested else "failed" if failed else "succeeded"
        self.out.marker("note", paragraphs=total, ran=self.ran, failed=failed, status=status)
        if self.term.requested:
            self.out.line(
                f"note terminated: stopped by SIGTERM; ran {self.ran} of {total} paragraphs"
            )
            return EXIT_TERMINATED
        if len(self.failed) == 1:
            self.out.line("note failed: " + self.failure(*self.failed[0]))
        elif self.failed:
            labels = ", ".join(p.label for p, _ in self.failed)
            self.out.line(f"note failed: paragraphs {labels} failed")
        else:
            self.out.line(f"note succeeded: ran {self.ran} of {total} paragraphs")
        return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """Execute the note described by ``args``; the exit status."""
    out = Output()
    try:
        params = load_parameters(args.parameters)
        with open(args.note, encoding="utf-8") as f:
            doc = json.load(f)
        paragraphs = [Paragraph.parse(i, raw) for i, raw in enumerate(find_paragraphs(doc), 1)]
    except (OSError, ValueError) as e:
        out.line(f"note failed: cannot read the input: {e}")
        return 2
    term = Terminator().install()
    note = NoteRun(params, out, term)
    try:
        note.run(paragraphs, args.continue_on_error)
    finally:
        term.cancel()
        note.close()
        write_atomic(args.output, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return note.summarize(len(paragraphs))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobyard.runners.zeppelin", description="Run an Apache Zeppelin note."
    )
    parser.add_argument("note", help="the note.json or .zpln to run")
    parser.add_argument("--parameters", help="JSON object of parameters")
    parser.add_argument("--output", required=True, help="where to write the executed note")
    parser.add_argument("--continue-on-error", action="store_true", help="run all paragraphs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
