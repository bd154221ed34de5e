"""Reading a job's append-only log file: ranges, tails."""

from __future__ import annotations

import os
from pathlib import Path

MAX_READ_BYTES = 8 * 1024 * 1024


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_range(path: Path, offset: int, limit: int = MAX_READ_BYTES) -> bytes:
    """Up to ``limit`` bytes from ``offset`` (nothing if the file does not exist yet)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


def tail_offset(path: Path, lines: int) -> int:
    """The byte offset where the last ``lines`` lines of the file start."""
    end = size(path)
    if lines <= 0 or end == 0:
        return end
    block = 64 * 1024
    pos = end
    newlines = 0
    with path.open("rb") as f:
        # a trailing newline ends the last line; it does not start another
        f.seek(end - 1)
        skip_last = f.read(1) == b"\n"
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            for i in range(len(chunk) - 1, -1, -1):
                if chunk[i] != 0x0A:
                    continue
                if skip_last and start + i == end - 1:
                    continue
                newlines += 1
                if newlines == lines:
                    return start + i + 1
            pos = start
    return 0


def tail_offset_in(data: bytes, lines: int) -> int:
    """The offset in ``data`` (the end of a log) where its last ``lines`` lines start
    (0 when it holds fewer)."""
    if lines <= 0:
        return len(data)
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos == -1:
            return 0
    return pos + 1


def last_lines(path: Path, lines: int, max_chars: int = 20_000) -> str:
    """The last ``lines`` lines of output as text (marker lines left out), at most
    ``max_chars`` characters."""
    offset = tail_offset(path, lines * 4)
    data = read_range(path, offset, max_chars * 4).decode("utf-8", errors="replace")
    kept = [line for line in data.splitlines() if not line.startswith("::jobyard::")][-lines:]
    return "\n".join(kept)[-max_chars:]


def ensure_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
    os.close(fd)


TRUNCATED = b"\n[jobyard: the log was truncated here: it reached the limit of %d bytes]\n"


def cap(path: Path, limit: int) -> bool:
    """Keep a log at most ``limit`` bytes plus a marker line saying it was truncated; what
    the job writes after that is dropped. True when the log is (now) truncated."""
    marker = TRUNCATED % limit
    end = size(path)
    if end <= limit:
        return False
    with path.open("r+b") as f:
        f.seek(limit)
        if f.read(len(marker)) != marker:
            f.seek(limit)
            f.write(marker)
        f.truncate(limit + len(marker))
    return True


#: below this much free space the disk of a log counts as full
DISK_FULL_BYTES = 64 * 1024


def disk_full(path: Path) -> bool:
    """Whether the disk that holds ``path`` (a log) has (almost) no space left."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < DISK_FULL_BYTES
