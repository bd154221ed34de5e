"""Job results: the files a job left in its output directory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath


class OutputType(StrEnum):
    REPORT = "report"
    DATA = "data"
    MODEL = "model"
    VISUALIZATION = "visualization"
    NOTEBOOK = "notebook"
    OTHER = "other"


_BY_EXTENSION: dict[str, OutputType] = {
    **dict.fromkeys(("html", "htm", "pdf", "md", "txt", "docx", "rtf"), OutputType.REPORT),
    **dict.fromkeys(
        (
            "csv",
            "tsv",
            "jsonl",
            "ndjson",
            "json",
            "parquet",
            "xlsx",
            "xls",
            "feather",
            "arrow",
            "avro",
        ),
        OutputType.DATA,
    ),
    **dict.fromkeys(
        ("pkl", "pickle", "joblib", "onnx", "pt", "pth", "h5", "pmml", "model"), OutputType.MODEL
    ),
    **dict.fromkeys(("png", "jpg", "jpeg", "svg", "gif", "webp"), OutputType.VISUALIZATION),
    **dict.fromkeys(("ipynb", "zpln"), OutputType.NOTEBOOK),
}


def classify(path: str) -> tuple[OutputType, str]:
    """(type, format) of a result file from its extension."""
    suffix = PurePosixPath(path).suffix.lower().lstrip(".")
    if path.endswith("executed.json"):
        return OutputType.NOTEBOOK, "json"
    return _BY_EXTENSION.get(suffix, OutputType.OTHER), suffix or "bin"


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """One result file of a job, kept by content hash so it outlives its folder."""

    job_id: str
    path: str
    type: OutputType
    format: str
    size: int
    sha256: str
    record_count: int | None
    role: str | None
    created_at: datetime
