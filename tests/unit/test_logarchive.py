"""Attempt logs on the shared storage (a real directory as the storage): segments of a
running log read back whole, the sealed log replaces them, tails, and which copy a
node reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobyard.storage import logs
from jobyard.storage.fs import Storage
from jobyard.storage.logarchive import JobLogs, LogArchive
from jobyard.storage.workspace import Workspace

JOB = "0b6c5a52-3a8e-4a57-9f11-6f1f7b1f9e10"


@pytest.fixture
def archive(tmp_path: Path) -> LogArchive:
    return LogArchive(Storage(str(tmp_path / "shared")))


def _grow(path: Path, text: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(text)


@pytest.mark.parametrize(
    ("data", "lines", "start"),
    [
        (b"a\nb\nc\n", 1, 4),
        (b"a\nb\nc\n", 2, 2),
        (b"a\nb\nc\n", 3, 0),
        (b"a\nb\nc\n", 9, 0),
        (b"a\nb\nc", 1, 4),
        (b"a\nb\nc", 0, 5),
        (b"", 2, 0),
    ],
)
def test_tail_offset_in_agrees_with_the_file_tail(
    tmp_path: Path, data: bytes, lines: int, start: int
) -> None:
    assert logs.tail_offset_in(data, lines) == start
    path = tmp_path / "log"
    path.write_bytes(data)
    assert logs.tail_offset(path, lines) == start


def test_a_running_log_shipped_in_segments_reads_back_whole(
    tmp_path: Path, archive: LogArchive
) -> None:
    local = tmp_path / "node" / "attempt-1.log"
    shipped = 0
    whole = b""
    for i in range(5):
        chunk = f"line {i}\n".encode() * (i + 1)
        _grow(local, chunk)
        whole += chunk
        shipped = archive.ship(JOB, 1, local, shipped, logs.size(local))
    assert shipped == len(whole)
    assert archive.size(JOB, 1) == len(whole)
    assert archive.read_range(JOB, 1, 0, 1 << 20) == whole
    # ranges across segment boundaries, and past the end
    for offset in range(0, len(whole) + 3, 7):
        assert archive.read_range(JOB, 1, offset, 11) == whole[offset : offset + 11]
    assert archive.read_range(JOB, 2, 0, 100) == b""  # another attempt: nothing


def test_sealing_stores_the_whole_log_and_drops_the_segments(
    tmp_path: Path, archive: LogArchive
) -> None:
    local = tmp_path / "node" / "attempt-1.log"
    _grow(local, b"first\n")
    archive.ship(JOB, 1, local, 0, logs.size(local))
    _grow(local, b"second\n")  # written after the last copy: only the seal has it
    archive.seal(JOB, 1, local)
    root = tmp_path / "shared" / "logs" / JOB
    assert sorted(p.name for p in root.iterdir()) == ["attempt-1.log"]
    assert archive.read_range(JOB, 1, 0, 100) == b"first\nsecond\n"
    assert archive.size(JOB, 1) == len(b"first\nsecond\n")
    archive.delete(JOB)
    assert not root.exists()


def test_a_gap_in_the_segments_ends_what_can_be_read(tmp_path: Path, archive: LogArchive) -> None:
    local = tmp_path / "attempt-1.log"
    _grow(local, b"0123456789")
    archive.ship(JOB, 1, local, 0, 4)
    archive.ship(JOB, 1, local, 6, 10)  # bytes 4-5 never arrived
    assert archive.size(JOB, 1) == 4
    assert archive.read_range(JOB, 1, 0, 100) == b"0123"


def test_a_node_reads_its_own_file_and_the_storage_for_attempts_it_did_not_run(
    tmp_path: Path, archive: LogArchive
) -> None:
    mine = Workspace(tmp_path / "node-a")
    other = Workspace(tmp_path / "node-b")
    _grow(mine.log_path(JOB, 1), b"one\ntwo\nthree\n")
    archive.ship(JOB, 1, mine.log_path(JOB, 1), 0, 8)  # "one\ntwo\n" copied so far
    a, b = JobLogs(mine, archive), JobLogs(other, archive)
    assert a.read_range(JOB, 1, 0) == b"one\ntwo\nthree\n"  # the freshest copy
    assert b.read_range(JOB, 1, 0) == b"one\ntwo\n"  # lags by at most one interval
    assert b.tail_offset(JOB, 1, 1) == 4
    archive.seal(JOB, 1, mine.log_path(JOB, 1))
    assert b.read_range(JOB, 1, 4) == b"two\nthree\n"
    assert b.tail_offset(JOB, 1, 1) == 8
    b.delete(JOB)  # removes the storage's copies
    assert b.read_range(JOB, 1, 0) == b""
    assert a.read_range(JOB, 1, 0) == b"one\ntwo\nthree\n"  # node A's file is its own


def test_without_shared_logs_only_the_local_file_is_read(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "node")
    local = JobLogs(ws, None)
    assert local.read_range(JOB, 1, 0) == b""
    _grow(ws.log_path(JOB, 1), b"x\ny\n")
    assert local.read_range(JOB, 1, 2) == b"y\n"
    assert local.tail_offset(JOB, 1, 1) == 2
