"""``jobyard serve`` without the CLI in the server's memory.

typer reads the command line in a forked child (``--help``, usage errors and their exit
codes included) and hands the settings back through a pipe; this process then runs the
server and never imports typer (≈ 1.5 MB of an idle server's RSS). Where there is no
``fork``, typer reads them here.

Before that, the command runs itself again (``exec``: the same process, the same name)
with ``-X no_debug_ranges``: code objects without their column tables, ≈ 0.7 MB of the
server's RSS for one interpreter start more (≈ 25 ms of CPU). A traceback in the
server's log then shows no ``^^^`` under the failing expression (nor does one of a
module whose ``.pyc`` the server wrote); the jobs' Python is not affected.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobyard.settings import Settings

#: in the child that reads the command line: the pipe that takes the settings
_handover: int | None = None
#: ``-X jobyard_name=…``: the process's name before it ran itself again
_NAME = "jobyard_name"
_COMM = "/proc/self/comm"


def serve(args: list[str]) -> None:
    """``jobyard serve …`` (``args`` without the program name)."""
    if not hasattr(os, "fork") or sys.platform != "linux":
        _command(args)  # the command runs the server (start)
        return
    _again_without_debug_ranges()
    run(_read_apart(args))


def start(settings: Settings) -> None:
    """What the ``serve`` command does with its settings: hand them over from the child
    that reads the command line, else run the server."""
    if _handover is None:
        run(settings)
        return
    with os.fdopen(_handover, "wb") as pipe:
        pickle.dump(settings, pipe)


def run(settings: Settings) -> None:
    """Run the server until it is told to stop; a start refused by a setting or by the
    database ends the process with code 2."""
    # the server, loaded only now: besides serve.py's settings the one place where the CLI
    # imports it (pyproject.toml's contract "the CLI talks to the server only through the SDK")
    from jobyard import lean_imports
    from jobyard.errors import JobyardError

    lean_imports.for_the_server()  # before uvicorn and FastAPI's routes are imported
    from jobyard.server import serve as run_server  # type: ignore[import-not-found,unused-ignore]

    try:
        run_server(settings)
    except JobyardError as e:
        print(f"jobyard: cannot start: {e.message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _again_without_debug_ranges() -> None:
    """Replace this process with the same command line and ``-X no_debug_ranges``, unless
    it has the flag (or ``PYTHONNODEBUGRANGES``) already or cannot say how it was run.
    The process keeps its name (``jobyard``, not the interpreter's) through ``-X`` and
    ``/proc/self/comm``."""
    name = sys._xoptions.get(_NAME)
    if isinstance(name, str) and name:  # this process is the command run again
        with contextlib.suppress(OSError):
            Path(_COMM).write_text(name)
    if (
        sys._xoptions.get("no_debug_ranges")
        or os.environ.get("PYTHONNODEBUGRANGES")
        or not sys.executable
        or not sys.orig_argv
    ):
        return
    try:
        name = Path(_COMM).read_text().strip()
    except OSError:
        name = ""
    again = [sys.executable, "-X", "no_debug_ranges", "-X", f"{_NAME}={name}", *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):  # else: on without the flag
        os.execv(sys.executable, again)  # noqa: S606 - this same command, our own argv


def _command(args: list[str]) -> None:
    from jobyard.cli.command import build_app

    build_app(client_commands=False)(args)


def _read_apart(args: list[str]) -> Settings:
    """The settings of ``jobyard serve args``, read by typer in a forked child. Whatever
    ends the command without settings (``--help``, a usage error) ends this process with
    the child's exit code, after the child has said why."""
    global _handover
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: typer, then out with os._exit (no atexit of the parent's)
        code = 1
        try:
            os.close(read_fd)
            _handover = write_fd
            _command(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:
            sys.excepthook(*sys.exc_info())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not data:
        raise SystemExit(code)
    settings: Settings = pickle.loads(data)  # noqa: S301 - our own child's, through our pipe
    return settings
