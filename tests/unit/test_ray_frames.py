"""The output frames of a Ray attempt: printed by the worker side (raywrap), taken out of
the streamed log and unpacked by the executor (raycluster), whatever the chunking."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from jobyard.executors.raycluster import _OutputFrames
from jobyard.executors.raywrap import send_outputs


def framed_log(tmp_path: Path, nonce: str, job_output: str) -> str:
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "a.csv").write_text("x\n1\n")
    (out / "sub" / "b.bin").write_bytes(bytes(range(256)) * 500)  # several frames
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        send_outputs(out, nonce, limit=10**9)
    return job_output + buf.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**9])
@pytest.mark.parametrize("job_output", ["line one\nline two\n", "no newline at the end"])
def test_frames_are_taken_out_of_the_log_and_unpacked(
    tmp_path: Path, chunk: int, job_output: str
) -> None:
    text = framed_log(tmp_path, "n0nce", job_output)
    frames = _OutputFrames("n0nce")
    kept = "".join(frames.filter(text[i : i + chunk]) for i in range(0, len(text), chunk))
    kept += frames.filter("", final=True)
    assert kept.rstrip("\n") == job_output.rstrip("\n")
    dest = tmp_path / "received"
    dest.mkdir()
    assert frames.unpack(dest) == 2
    assert (dest / "a.csv").read_text() == "x\n1\n"
    assert (dest / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 500


def test_frames_of_another_nonce_stay_in_the_log_and_nothing_is_unpacked(
    tmp_path: Path,
) -> None:
    text = framed_log(tmp_path, "forged", "hello\n")
    frames = _OutputFrames("real")
    kept = frames.filter(text) + frames.filter("", final=True)
    assert "@@jobyard-ray:forged:end" in kept
    assert frames.unpack(tmp_path) == 0
