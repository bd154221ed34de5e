"""An attempt's exit status as its executor recorded it (``Workspace.exit_status_path``),
for a restarted node to learn how the attempts that ended while it was down ended.

The file holds JSON objects one after another, as bubblewrap's ``--json-status-fd``
writes them (``{ "child-pid": 12 }`` then ``{ "exit-code": 3 }``), or just
``{"exit-code": 3}``. The last object with an integer ``exit-code`` wins; no file, no such
object, or an unreadable file: the status is unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jobyard.clock import from_epoch

#: a status file is a few bytes; only its last bytes are read beyond this
MAX_READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class ExitStatus:
    code: int  #: the exit code (negative: killed by that signal, as the executor reports it)
    at: datetime  #: when it was recorded (the file's modification time)


def parse_exit_code(text: str) -> int | None:
    """The exit code of the last object in ``text`` that has one, or None. Text that is
    not JSON (a torn write, junk) is skipped up to the next ``{``."""
    decoder = json.JSONDecoder()
    code: int | None = None
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            value = obj.get("exit-code")
            if isinstance(value, int) and not isinstance(value, bool):
                code = value
        pos = text.find("{", end)
    return code


def read_exit_status(path: Path) -> ExitStatus | None:
    """The exit status recorded at ``path``, or None when it is unknown."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - MAX_READ_BYTES))
            data = f.read()
            mtime = path.stat().st_mtime
    except OSError:
        return None
    code = parse_exit_code(data.decode("utf-8", errors="replace"))
    return None if code is None else ExitStatus(code=code, at=from_epoch(mtime))
