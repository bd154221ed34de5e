"""Query parameters that native and compatibility routers read alike."""

from __future__ import annotations

from enum import StrEnum


class ResultFormat(StrEnum):
    """How a job's results are answered: a summary, every detail, or one zip."""

    SUMMARY = "summary"
    DETAILED = "detailed"
    DOWNLOAD = "download"


def split_values(values: list[str] | None) -> list[str]:
    """The values of a repeated, comma-separated query parameter (``?status=a,b&status=c``
    → ``["a", "b", "c"]``), each stripped, blanks dropped."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]
