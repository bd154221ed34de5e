"""Run a Jupyter notebook as a jobyard job.

Usage::

    python -m jobyard.runners.jupyter NOTEBOOK --parameters parameters.json \\
        --output executed.ipynb [--continue-on-error] [--timeout-per-cell S] [--kernel python3]

Parameters are injected papermill-style: a code cell tagged ``injected-parameters`` goes
right after the first cell tagged ``parameters`` (or at the top; an old injected cell is
replaced). It runs in its place without markers; a failure there fails the notebook.
``--kernel python3`` (the default) is ipykernel in this interpreter; ``--timeout-per-cell``
interrupts a cell after S seconds and fails it with ``CellTimeoutError``.

Cells are numbered from 0 by their position in NOTEBOOK (the injected cell is not
counted). Each code cell that runs gets ``cell`` markers: ``started`` (with
``source_preview``), then ``succeeded`` or ``failed`` (with ``duration_s``, and ``error``
"<ename>: <evalue>" on failure). Markdown, raw, empty and ``skip-execution`` cells are
skipped without markers. Outputs are printed to stdout as they arrive. The last lines are
a ``notebook`` marker (``cells``, ``ran``, ``failed``, ``status``) and a human summary.

Exit status: 0 all cells succeeded; 1 a cell failed (or the kernel failed); 2 unreadable
NOTEBOOK or parameters; 143 SIGTERM (the kernel is interrupted, what ran is saved).
The executed notebook is always written to ``--output``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbformat import NotebookNode

from jobyard.runners.kernel import (
    EXIT_TERMINATED,
    PYTHON_KERNEL,
    Output,
    Terminator,
    async_kernel_manager,
    first_line,
    kernel_signaller,
    load_parameters,
    message_text,
    parameter_source,
    write_atomic,
)

INJECTED_TAG = "injected-parameters"
SKIP_TAG = "skip-execution"  #: nbclient skips these cells


class _StreamingClient(NotebookClient):
    """A NotebookClient that also prints each output as it arrives."""

    printer: Output

    def output(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
    ) -> NotebookNode | None:
        self.printer.write(message_text(msg))
        return super().output(outs, msg, display_id, cell_index)


@dataclass
class _Run:
    """The cells to run, in order, as (position in the executed notebook, source index;
    -1 for the injected cell), and what happened."""

    cells: list[tuple[int, int]]
    ran: int = 0
    failed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None  #: a failure outside the numbered cells

    @property
    def total(self) -> int:
        return sum(1 for _, index in self.cells if index >= 0)


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _runs(cell: NotebookNode) -> bool:
    """Whether nbclient executes ``cell`` (code, not empty, not tagged skip-execution)."""
    return bool(cell.cell_type == "code" and cell.source.strip() and SKIP_TAG not in _tags(cell))


def _prepare(nb: NotebookNode, params: dict[str, Any], out: Output) -> _Run:
    """Clear old outputs, (re)inject the parameters cell and list the cells to run."""
    kept: list[tuple[int, NotebookNode]] = [
        (i, c) for i, c in enumerate(nb.cells) if INJECTED_TAG not in _tags(c)
    ]
    for _, cell in kept:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    source, skipped = parameter_source(params)
    for name in skipped:
        out.line(f"warning: parameter {name!r} is not a valid Python identifier; not injected")
    # nbformat's API is unannotated: hence the no-untyped-call ignores in this module
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})  # type: ignore[no-untyped-call]
    if nb.get("nbformat_minor", 0) < 5:
        del injected["id"]  # cell ids arrived with nbformat 4.5
    at = next((n + 1 for n, (_, c) in enumerate(kept) if "parameters" in _tags(c)), 0)
    kept.insert(at, (-1, injected))
    nb.cells = [c for _, c in kept]
    return _Run(cells=[(pos, i) for pos, (i, c) in enumerate(kept) if _runs(c)])


def _run_cell(client: NotebookClient, nb: NotebookNode, pos: int) -> str | None:
    """Execute one cell; the error ("<ename>: <evalue>") or None."""
    try:
        client.execute_cell(nb.cells[pos], pos)
    except CellExecutionError as e:
        return f"{e.ename}: {e.evalue}"
    except DeadKernelError as e:
        return f"DeadKernelError: {e}"
    return None


def _execute(
    client: _StreamingClient, nb: NotebookNode, run: _Run, keep_going: bool, term: Terminator
) -> None:
    out = client.printer
    for pos, index in run.cells:
        if term.requested:
            return
        if index < 0:
            error = _run_cell(client, nb, pos)
            if error:
                run.fatal = f"the injected parameters cell failed: {error}"
                return
            continue
        out.marker(
            "cell", index=index, status="started", source_preview=first_line(nb.cells[pos].source)
        )
        started = time.monotonic()
        error = _run_cell(client, nb, pos)
        run.ran += 1
        duration = round(time.monotonic() - started, 3)
        if error is None:
            out.marker("cell", index=index, status="succeeded", duration_s=duration)
            continue
        if term.requested:
            error = f"{error.rstrip(': ')} (interrupted by SIGTERM)"
        out.line(f"cell {index} failed: {error}")
        out.marker("cell", index=index, status="failed", duration_s=duration, error=error)
        run.failed.append(index)
        run.errors.append(error)
        if not keep_going or term.requested or error.startswith("DeadKernelError"):
            return


def _summarize(run: _Run, out: Output, terminated: bool) -> int:
    failed = bool(run.failed or run.fatal)
    status = "terminated" if terminated else "failed" if failed else "succeeded"
    out.marker("notebook", cells=run.total, ran=run.ran, failed=run.failed, status=status)
    if terminated:
        out.line(f"notebook terminated: stopped by SIGTERM; ran {run.ran} of {run.total} cells")
        return EXIT_TERMINATED
    if run.fatal:
        out.line(f"notebook failed: {run.fatal}")
    elif len(run.failed) == 1:
        out.line(f"notebook failed: cell {run.failed[0]} failed: {run.errors[0]}")
    elif run.failed:
        out.line(f"notebook failed: cells {', '.join(map(str, run.failed))} failed")
    else:
        out.line(f"notebook succeeded: {run.total} cells")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """Execute the notebook described by ``args``; the exit status."""
    out = Output()
    try:
        params = load_parameters(args.parameters)
        nb = nbformat.read(args.notebook, as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as e:
        out.line(f"notebook failed: cannot read the input: {e}")
        return 2
    state = _prepare(nb, params, out)
    term = Terminator().install()
    ipc_dir = tempfile.TemporaryDirectory(prefix="jobyard-kernel-")
    km = async_kernel_manager(args.kernel, ipc_dir.name)
    timeout = math.ceil(args.timeout_per_cell) if args.timeout_per_cell else None
    client = _StreamingClient(
        nb,
        km=km,
        timeout=timeout,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "CellTimeoutError",
            "evalue": f"the cell did not finish within {timeout} s",
            "traceback": [],
        },
        resources={"metadata": {"path": os.getcwd()}},
    )
    client.printer = out
    try:
        with ExitStack() as stack:
            try:
                stack.enter_context(client.setup_kernel(cleanup_kc=True))
            except Exception as e:
                state.fatal = f"the {args.kernel} kernel did not start: {type(e).__name__}: {e}"
            else:
                term.watch(kernel_signaller(km))
                _execute(client, nb, state, args.continue_on_error, term)
                if term.requested:
                    client.shutdown_kernel = "immediate"
    finally:
        term.watch(None)
        term.cancel()
        nb.metadata["jobyard"] = {"parameters": params, "failed_cells": state.failed}
        write_atomic(args.output, nbformat.writes(nb))  # type: ignore[no-untyped-call]
        ipc_dir.cleanup()
    return _summarize(state, out, term.requested)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobyard.runners.jupyter", description="Run a Jupyter notebook."
    )
    parser.add_argument("notebook", help="the .ipynb to run")
    parser.add_argument("--parameters", help="JSON object of parameters to inject")
    parser.add_argument("--output", required=True, help="where to write the executed notebook")
    parser.add_argument("--continue-on-error", action="store_true", help="run all cells")
    parser.add_argument("--timeout-per-cell", type=float, metavar="S", help="seconds per cell")
    parser.add_argument("--kernel", default=PYTHON_KERNEL, help="kernel name (default python3)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
