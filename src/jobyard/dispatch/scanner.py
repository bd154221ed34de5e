"""Reading marker lines out of a running job's log as it grows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobyard.markers import parse_marker
from jobyard.storage import logs

MAX_LINE = 64 * 1024


class LogScanner:
    """Keeps an offset into one log file and returns the markers of new complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """Markers of the complete lines written since the last poll (not thread-safe:
        callers take turns)."""
        data = logs.read_range(self.path, self.offset, 1024 * 1024)
        if not data:
            return []
        self.offset += len(data)
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:  # an endless line is output, not a marker
            self._partial = b""
        found = []
        for line in lines:
            if b"::jobyard::" not in line:
                continue
            marker = parse_marker(line.decode("utf-8", errors="replace"))
            if marker is not None:
                found.append(marker)
        return found
