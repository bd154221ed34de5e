"""``safe_relpath``: what a user-given folder path may be, and what it becomes."""

from __future__ import annotations

import posixpath

import pytest

from jobyard import errors
from jobyard.service.folders import join_prefix
from jobyard.storage.fs import safe_relpath

ACCEPTED = [
    ("a.txt", "a.txt"),
    ("dir/sub/file.csv", "dir/sub/file.csv"),
    ("./a/./b", "a/b"),
    ("a//b/", "a/b"),
    ("...", "..."),
    ("..a/b..", "..a/b.."),
    ("a/.hidden", "a/.hidden"),
    ("with space/ü.txt", "with space/ü.txt"),
    ("cafe\u0301.txt", "café.txt"),  # NFC: one form for one name
    ("key:value.txt", "key:value.txt"),
    ("a" * 1024, "a" * 1024),
]

REFUSED = [
    "",
    ".",
    "./",
    "/",
    "..",
    "../x",
    "a/../../x",
    "a/..",
    "/etc/passwd",
    "//server/share",
    "a\\b",
    "..\\..\\x",
    "C:\\x",
    "C:x",
    "c:/x",
    "x:y",  # a colon second looks like a drive letter: refused
    "a\0b",
    "a\nb",
    "tab\there",
    "\x1b[31m",
    "a" * 1025,
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted(raw: str, expected: str) -> None:
    assert safe_relpath(raw) == expected


@pytest.mark.parametrize("raw", REFUSED)
def test_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(errors.InvalidInput) as err:
        safe_relpath(raw, field="path")
    assert err.value.details == {"field": "path"}
    assert "path" in err.value.message


@pytest.mark.parametrize("raw", [r for r, _ in ACCEPTED] + REFUSED)
def test_a_result_never_leaves_its_root(raw: str) -> None:
    try:
        rel = safe_relpath(raw)
    except errors.InvalidInput:
        return
    joined = posixpath.normpath(posixpath.join("/root", rel))
    assert joined.startswith("/root/")
    assert safe_relpath(rel) == rel  # idempotent


def test_join_prefix() -> None:
    assert join_prefix(None, "a.csv") == "a.csv"
    assert join_prefix("in/2024/", "a.csv") == "in/2024/a.csv"
    with pytest.raises(errors.InvalidInput) as err:
        join_prefix("../up", "a.csv")
    assert err.value.details == {"field": "prefix"}
    with pytest.raises(errors.InvalidInput) as err:
        join_prefix("in", "../../a.csv")
    assert err.value.details == {"field": "path"}
