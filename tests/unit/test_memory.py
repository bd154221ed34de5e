"""``memory.built_apart``: a value built in a forked child comes back whole, and what
fails or hangs there is built here instead."""

from __future__ import annotations

import gzip
import json
import os
import time

import pytest

from jobyard import memory

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_the_value_is_built_in_a_child_and_comes_back_whole() -> None:
    parent = os.getpid()
    big: dict[str, object] = {
        "paths": {f"/v1/x{i}": {"get": {"responses": {"200": {}}}} for i in range(5000)}
    }

    def build() -> dict[str, object]:
        return {"pid": os.getpid(), **big}

    value = json.loads(memory.built_apart(build))
    assert value["pid"] != parent  # built in another process
    assert value["paths"] == big["paths"]  # over 64 KiB: read in several chunks


def test_a_build_that_fails_in_the_child_runs_here() -> None:
    parent = os.getpid()

    def build() -> dict[str, int]:
        if os.getpid() != parent:
            raise RuntimeError("only in the child")
        return {"pid": os.getpid()}

    assert json.loads(memory.built_apart(build)) == {"pid": parent}


def test_a_child_that_takes_too_long_is_killed_and_the_value_built_here() -> None:
    parent = os.getpid()

    def build() -> dict[str, int]:
        if os.getpid() != parent:
            time.sleep(30)  # the hang being tested, not synchronisation
        return {"pid": os.getpid()}

    assert json.loads(memory.built_apart(build, timeout_s=0.5)) == {"pid": parent}


def test_gzip_the_child_sends_the_json_text_gzipped() -> None:
    parent = os.getpid()

    def build() -> dict[str, object]:
        return {"pid": os.getpid(), "x": ["é", 1.5] * 3000}

    packed = memory.built_apart(build, gzip=True)
    text = gzip.decompress(packed)
    assert json.loads(text)["pid"] != parent
    assert text == memory.built_apart(lambda: json.loads(text))  # the same JSON text
    assert len(packed) < len(text) / 10
